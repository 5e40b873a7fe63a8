"""The fit schedule's memory of one flow (:class:`FlowFit`) and what it shows of it.

One per flow id, for all its versions: the fit attempts (for the refit clock),
the fitted and the published snapshots (for the updates between fits and their
revision numbers), the online learner and what of it was published, and the
counters and last diagnostics that ``status()`` and the metrics show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policy.online import OnlineLearner
from policy.online_config import Outcome
from policy.reward_counts import FlowCounts
from policy.snapshot import Guardrails, PolicySnapshot


@dataclass
class FlowFit:
    """The schedule's memory of one flow (all its versions)."""

    flow_version: int | None = None  # the version the snapshots below are for
    attempted_version: int | None = None  # the flow version of the last fit attempt
    attempted_at: float | None = None  # monotonic time of the last fit attempt
    attempted_trials: int = 0  # outcomes the last fit attempt saw
    attempt_failed: bool = False  # the last attempt published nothing
    fit_counts: FlowCounts | None = None  # what the current fitted snapshot was fitted on
    fitted: PolicySnapshot | None = None  # the last snapshot a fit produced
    published: PolicySnapshot | None = None  # the last snapshot published (fit or update)
    updated_at: float = 0.0  # monotonic time of the last publication
    updated_trials: int = 0  # outcomes the last publication reflects
    revision: int = 0  # derived publications since the fit
    fits: int = 0
    failures: int = 0
    last_reason: str | None = None
    last_diagnostics: Mapping[str, Any] = field(default_factory=dict)
    last_fit_seconds: float | None = None
    learner: OnlineLearner | None = None  # the online posterior of ``learner.flow_version``
    learned: int = 0  # learner.outcomes at its last publication
    changes_published: int = 0  # learner.changes at its last publication
    since_request: list[Outcome] = field(default_factory=list)  # during the running fit
    online_root: str | None = None  # the version online publications derive from

    def status(self, rails: Guardrails) -> dict[str, Any]:
        """The flow's entry in the schedule's status, with its guardrails ``rails``."""
        return {
            "flow_version": self.flow_version,
            "fitted_version": self.fitted.version if self.fitted else None,
            "published_version": self.published.version if self.published else None,
            "fits": self.fits,
            "failures": self.failures,
            "last_reason": self.last_reason,
            "last_fit_seconds": self.last_fit_seconds,
            "diagnostics": dict(self.last_diagnostics),
            "guardrails": dataclasses.asdict(rails),
        }
