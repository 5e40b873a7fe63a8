"""What a simulation run is configured with, and how its production arm gets fits.

:class:`SimConfig` holds the run's size, seed, fit schedule (the first fit at
``first_fit`` conversations, then every ``refit_every``), what the production arm
does between fits (:data:`BETWEEN_FITS`), the online learner as production's
environment defaults configure it, the sampler's settings and the exploration
floor. A *fitter* turns the counts so far into a snapshot: :func:`model_fitter`
calls :func:`policy.model.fit_flow` in the process (PyMC is imported only
then), :class:`WorkerFitter` asks the policy service's fit worker (a spawned
process) with a real :class:`~policy.fit_request.FitRequest`. :class:`FitRecord` is
what the run reports of each fit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from policy.online_config import OnlineConfig
from policy.reward_counts import FlowCounts
from policy.settings import PRODUCTION_ONLINE
from policy.sim.population import Population
from policy.snapshot import Guardrails, PolicySnapshot

BETWEEN_FITS = ("online", "conjugate", "none")  # what the production arm does between fits


@dataclass(frozen=True, slots=True)
class SimConfig:
    conversations: int = 50_000
    seed: int = 7
    edge_scale: float = 1.0
    first_fit: int = 1_000  # the first fit, after this many conversations
    refit_every: int = 5_000  # then a fit every this many conversations
    update_every: int = 250  # publications between fits every this many conversations (0: none)
    between_fits: str = "online"  # BETWEEN_FITS: the online learner, conjugate updates, nothing
    # the online learner as production's environment defaults configure it
    half_life: float = PRODUCTION_ONLINE.half_life  # LEADFLOW_POLICY_HALF_LIFE
    pairs: bool = PRODUCTION_ONLINE.pairs  # its context interactions (LEADFLOW_POLICY_PAIRS)
    change_half_life: float = PRODUCTION_ONLINE.change_half_life  # its change detector
    change_threshold: float = PRODUCTION_ONLINE.change_threshold
    draw_scale: float = PRODUCTION_ONLINE.draw_scale  # its published draws' spread
    pair_ard: bool = PRODUCTION_ONLINE.pair_ard  # its pairs' scales learnt per point
    # publish the learner's posterior before the first fit, from the first update tick
    # at which it has ``early_outcomes`` outcomes: production fits first at
    # LEADFLOW_POLICY_MIN_OUTCOMES (100) outcomes, the run's first fit comes later
    # (``first_fit`` conversations) only to keep runs short
    online_before_fit: bool = True
    early_outcomes: int = 100
    draws: int = 1_000  # per chain (half of fit_flow's default, to keep a run short)
    tune: int = 500
    chains: int = 2
    min_exploration: float = 0.05
    # sampler and acceptance settings passed to fit_flow; None: fit_flow's own (the
    # production checks: r-hat, bulk ESS, divergences), which the full run uses
    target_accept: float | None = None
    max_rhat: float | None = None
    min_ess: float | None = None
    max_divergences: int | None = None
    series_every: int = 250  # the cumulative curves keep a point every this many

    @classmethod
    def fast(cls, conversations: int = 1_500, seed: int = 7) -> SimConfig:
        """A smoke run: few conversations, two tiny fits (2 chains of 150 draws) with
        loose checks (only a sampler that went wrong is refused)."""
        return cls(
            conversations=conversations,
            seed=seed,
            first_fit=conversations // 4,
            refit_every=conversations // 2,
            update_every=100,
            draws=150,
            tune=150,
            chains=2,
            max_rhat=1.1,
            min_ess=10.0,
            max_divergences=1_000,
            series_every=max(10, conversations // 100),
        )

    def fit_due(self, done: int) -> bool:
        if done >= self.conversations:
            return False  # nobody would be served by it
        return done == self.first_fit or (done > self.first_fit and done % self.refit_every == 0)

    def fit_options(self) -> dict[str, Any]:
        """The sampler and diagnostics settings that override fit_flow's defaults."""
        options = {
            "target_accept": self.target_accept,
            "max_rhat": self.max_rhat,
            "min_ess": self.min_ess,
            "max_divergences": self.max_divergences,
        }
        return {k: v for k, v in options.items() if v is not None}

    def update_due(self, done: int) -> bool:
        return self.update_every > 0 and done % self.update_every == 0

    def online_config(self) -> OnlineConfig | None:
        """The online learner's configuration (production's but the half-life), None
        unless ``between_fits`` is ``online``."""
        if self.between_fits not in BETWEEN_FITS:
            raise ValueError(f"between_fits must be one of {BETWEEN_FITS}: {self.between_fits!r}")
        if self.between_fits != "online":
            return None
        return OnlineConfig(
            half_life=self.half_life,
            pairs=self.pairs,
            change_half_life=self.change_half_life,
            change_threshold=self.change_threshold,
            draw_scale=self.draw_scale,
            pair_ard=self.pair_ard,
        )


@dataclass(frozen=True, slots=True)
class FitOutcome:
    snapshot: PolicySnapshot | None
    diagnostics: Mapping[str, Any]
    reason: str


class Fitter(Protocol):
    def __call__(self, counts: FlowCounts, *, version: str, seed: int) -> FitOutcome: ...


# (fitted snapshot, outcomes counted since its fit, new version, created at) -> updated one
Updater = Callable[[PolicySnapshot, FlowCounts, str, float], PolicySnapshot]


def model_fitter(population: Population, config: SimConfig) -> Fitter:
    """``policy.model.fit_flow`` with the run's draws and guardrails (PyMC is imported here)."""
    from policy.model import fit_flow

    flow = population.flow
    rails = Guardrails(min_exploration=config.min_exploration)
    options = config.fit_options()

    def fit(counts: FlowCounts, *, version: str, seed: int) -> FitOutcome:
        result = fit_flow(
            flow.id,
            flow.version,
            counts,
            version=version,
            seed=seed,
            guardrails=rails,
            draws=config.draws,
            tune=config.tune,
            chains=config.chains,
            **options,
        )
        return FitOutcome(result.snapshot, dict(result.diagnostics), result.reason or "ok")

    return fit


class WorkerFitter:
    """The policy service's fit worker (:class:`policy.fit_worker.ProcessFitter`: a
    spawned process that imports PyMC) asked with a real
    :class:`~policy.fit_request.FitRequest`; the run waits for each fit. ``close``
    stops the worker."""

    def __init__(self, population: Population, config: SimConfig) -> None:
        from policy.fit_worker import ProcessFitter
        from policy.settings import FitSettings

        self.population = population
        self.rails = Guardrails(min_exploration=config.min_exploration)
        self.options: dict[str, int | float] = {
            "draws": config.draws,
            "tune": config.tune,
            "chains": config.chains,
            **config.fit_options(),
        }
        self.worker = ProcessFitter(FitSettings())

    def __call__(self, counts: FlowCounts, *, version: str, seed: int) -> FitOutcome:
        from policy.fit_request import FitRequest
        from policy.flow_snapshots import decision_points

        flow = self.population.flow
        request = FitRequest(
            flow_id=flow.id,
            flow_version=flow.version,
            counts=counts,
            version=version,
            seed=seed,
            guardrails=self.rails,
            points=decision_points(flow),
            options=self.options,
        )
        report = asyncio.run(self.worker(request))
        return FitOutcome(report.snapshot, dict(report.diagnostics), report.reason or "ok")

    def close(self) -> None:
        self.worker.close()


def conjugate_updater() -> Updater | None:
    """The policy service's update between fits (``policy.conjugate.update_snapshot``,
    through ``policy.fitting.conjugate_update``); None while that module is missing."""
    from policy.fitting import conjugate_update

    return conjugate_update()


@dataclass
class FitRecord:
    at_conversation: int
    version: str
    seconds: float
    installed: bool
    reason: str
    diagnostics: Mapping[str, Any]
    # what a refused fit published instead: "online" (the learner's posterior) or "none"
    fallback: str | None = None
    verdict: str | None = None  # policy.fit_verdict's reason for a refused fit
