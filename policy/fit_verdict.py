"""What to publish after a PyMC fit, from its diagnostics. Pure.

A fit is refused today for a single divergent transition (``policy.model``:
``MAX_DIVERGENCES = 0``), which left the policy uniform for thousands of
conversations while fits kept failing. :func:`fit_verdict` decides instead:

* **publish the fit**: r-hat and bulk ESS pass and no transition diverged;
* **publish the online posterior** (:mod:`policy.online`) and retry the fit
  later with a higher ``target_accept`` (smaller steps, fewer divergences): r-hat
  and ESS pass but some transitions diverged, fewer than ``max_divergent_share``
  (1%) of them: the draws are mostly right but may miss a corner of the
  posterior, and the online posterior (numpy, always available once it has
  been fed) is a safe stand-in. Without an online posterior the fit itself is
  published (a few divergences never leave the policy uniform);
* **retry**: 1% or more diverged, or r-hat / ESS fail, and attempts remain:
  publish the online posterior meanwhile when there is one;
* after the last attempt: the online posterior if there is one, else nothing
  (the previous snapshot, or uniform, stays).

``transitions`` are the post-tuning draws of all chains (``chains * draws``):
the divergences policy.model counts are those after tuning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

MAX_DIVERGENT_SHARE = 0.01
RETRY_TARGET_ACCEPT = 0.99  # policy.model's TARGET_ACCEPT is lower
MAX_ATTEMPTS = 2

Publish = Literal["fit", "online", "none"]


@dataclass(frozen=True, slots=True)
class FitVerdict:
    """``publish``: which posterior to publish now; ``retry``: fit again (with
    ``target_accept``) at the next chance; ``reason``: for the log and the summary."""

    publish: Publish
    retry: bool
    target_accept: float | None
    reason: str


def fit_verdict(
    *,
    divergences: int,
    transitions: int,
    rhat_max: float,
    ess_bulk_min: float,
    max_rhat: float = 1.01,
    min_ess: float = 400.0,
    online_available: bool = False,
    attempt: int = 1,
    max_attempts: int = MAX_ATTEMPTS,
    max_divergent_share: float = MAX_DIVERGENT_SHARE,
) -> FitVerdict:
    """The verdict on one fit attempt (``attempt`` counts from 1 per fit)."""
    share = divergences / transitions if transitions > 0 else math.inf
    mixed = rhat_max <= max_rhat and ess_bulk_min >= min_ess  # NaN fails both
    fallback: Publish = "online" if online_available else "none"
    retry = attempt < max_attempts
    if mixed and divergences <= 0:
        return FitVerdict("fit", False, None, "converged")
    if mixed and share < max_divergent_share:
        why = f"{divergences} of {transitions} transitions diverged ({share:.2%})"
        if online_available:
            return FitVerdict(
                "online", retry, RETRY_TARGET_ACCEPT if retry else None, why + ": online posterior"
            )
        return FitVerdict("fit", retry, RETRY_TARGET_ACCEPT if retry else None, why + ": tolerated")
    problems = []
    if not rhat_max <= max_rhat:
        problems.append(f"r-hat {rhat_max:.4f} > {max_rhat:g}")
    if not ess_bulk_min >= min_ess:
        problems.append(f"bulk ESS {ess_bulk_min:.0f} < {min_ess:g}")
    if divergences > 0 and not share < max_divergent_share:
        problems.append(f"{divergences} of {transitions} transitions diverged ({share:.2%})")
    why = "not converged: " + "; ".join(problems)
    if retry:
        return FitVerdict(fallback, True, RETRY_TARGET_ACCEPT, why + ": retrying")
    return FitVerdict(fallback, False, None, why + ": attempts exhausted")


def verdict_from_diagnostics(
    diagnostics: Mapping[str, Any],
    *,
    online_available: bool,
    attempt: int = 1,
    max_attempts: int = MAX_ATTEMPTS,
) -> FitVerdict:
    """:func:`fit_verdict` from ``FitResult.diagnostics`` of ``policy.model.fit_flow``
    (``divergences``, ``chains``, ``draws``, ``rhat_max``, ``ess_bulk_min``, and the
    thresholds ``max_rhat``, ``min_ess_bulk``). A fit that never sampled (no
    ``rhat_max``) gets the fallback and no retry."""
    if "rhat_max" not in diagnostics:
        fallback: Publish = "online" if online_available else "none"
        return FitVerdict(fallback, False, None, "the fit did not sample")
    return fit_verdict(
        divergences=int(diagnostics.get("divergences", 0)),
        transitions=int(diagnostics.get("chains", 0)) * int(diagnostics.get("draws", 0)),
        rhat_max=float(diagnostics["rhat_max"]),
        ess_bulk_min=float(diagnostics.get("ess_bulk_min", math.nan)),
        max_rhat=float(diagnostics.get("max_rhat", 1.01)),
        min_ess=float(diagnostics.get("min_ess_bulk", 400.0)),
        online_available=online_available,
        attempt=attempt,
        max_attempts=max_attempts,
    )
