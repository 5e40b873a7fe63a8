"""When the fit schedule fits a flow and when it publishes between fits: pure rules.

They read only the schedule's memory of the flow (:class:`~policy.flow_fit.FlowFit`,
None before the schedule saw it), the counts, the monotonic time and the
settings (:class:`~policy.settings.Schedule`); :class:`policy.fitting.FitScheduler`
asks them at every tick. A flow has one snapshot at a time (keyed by flow id),
so the schedule learns for one flow version: :func:`fit_target`.
"""

from __future__ import annotations

from collections.abc import Mapping

from policy.flow_fit import FlowFit
from policy.reward_counts import FlowCounts
from policy.settings import Schedule


def fit_target(
    state: FlowFit | None, versions: Mapping[int, FlowCounts], schedule: Schedule
) -> int | None:
    """The flow version to fit: the newest with enough outcomes, or the one the
    flow's snapshot is for while no newer version has enough."""
    current = state.flow_version if state is not None else None
    ready = [
        v
        for v, counts in versions.items()
        if counts.trials() >= schedule.min_outcomes and (current is None or v >= current)
    ]
    if ready:
        return max(ready)
    return current if current in versions else None


def fit_due(
    state: FlowFit | None, flow_version: int, counts: FlowCounts, now: float, schedule: Schedule
) -> str | None:
    """Why the flow version should be fitted now ("first", "interval", "outcomes",
    "retry" after a failed attempt), or None."""
    trials = counts.trials()
    if state is None or state.attempted_version != flow_version or state.attempted_at is None:
        return "first" if trials >= schedule.min_outcomes else None
    if state.attempt_failed:  # same data, another seed: worth another try, not at once
        return "retry" if now - state.attempted_at >= schedule.refit_seconds else None
    new = trials - state.attempted_trials
    if new < schedule.min_outcomes:
        return None
    if schedule.refit_outcomes and new >= schedule.refit_outcomes:
        return "outcomes"
    if now - state.attempted_at >= schedule.refit_seconds:
        return "interval"
    return None


def online_update_due(state: FlowFit | None, now: float, schedule: Schedule) -> bool:
    """Publish the online learner's posterior: it learnt outcomes since its last
    publication, and ``update_seconds`` passed since then or it detected a change."""
    return (
        schedule.update_seconds > 0
        and state is not None
        and state.published is not None
        and state.learner is not None
        and state.learner.flow_version == state.flow_version
        and state.learner.outcomes > state.learned
        and (
            now - state.updated_at >= schedule.update_seconds
            or state.learner.changes > state.changes_published
        )
    )


def conjugate_update_due(
    state: FlowFit | None, counts: FlowCounts, now: float, schedule: Schedule
) -> bool:
    """Publish the conjugate update of the fit: outcomes were counted since the
    last publication, which is ``update_seconds`` old."""
    return (
        schedule.update_seconds > 0
        and state is not None
        and state.fitted is not None
        and state.fit_counts is not None
        and counts.trials() > state.updated_trials
        and now - state.updated_at >= schedule.update_seconds
    )
