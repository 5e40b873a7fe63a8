"""What the fit schedule asks a fit and what the fit answers.

A :class:`FitRequest` holds a copy of the counts (the ledger keeps counting
while the fit runs), the version its snapshot will carry and the seed derived
from that version (:func:`policy.fit_versions.fit_seed`), so that a fit is
reproducible from its counts and version. The fit (``policy.model.fit_flow``:
PyMC, seconds to minutes) runs in a worker process
(:class:`policy.fit_worker.ProcessFitter`), which answers with a
:class:`FitReport` or raises :class:`FitFailed`. Nothing here imports PyMC.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policy.reward_counts import FlowCounts
from policy.snapshot import Guardrails, PolicySnapshot


@dataclass(frozen=True, slots=True)
class FitRequest:
    flow_id: str
    flow_version: int
    counts: FlowCounts  # a copy: the ledger keeps counting while the fit runs
    version: str
    seed: int
    guardrails: Guardrails
    points: Mapping[tuple[str, str], tuple[str, ...]] | None = None  # the flow's, if known
    options: Mapping[str, int | float] = field(default_factory=dict)  # more fit_flow kwargs


@dataclass(frozen=True, slots=True)
class FitReport:
    """What comes back from a fit: the snapshot (None when it failed its diagnostics
    or could not be fitted) with the fit's diagnostics and the reason it failed."""

    snapshot: PolicySnapshot | None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    seconds: float = 0.0


Fit = Callable[[FitRequest], Awaitable[FitReport]]


class FitFailed(RuntimeError):
    """The fit did not come back (worker crashed, timed out, PyMC missing...)."""
