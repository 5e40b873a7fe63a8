"""Settings of Bayesian edge selection, from environment variables with defaults.

The policy service (``leadflow run policy``) and the embedded mode read the same
variables; docs/policy.md explains each.

| variable | default | meaning |
|---|---|---|
| LEADFLOW_POLICY | thompson | or ``uniform``: no ledger, no fits |
| LEADFLOW_POLICY_HOST / _PORT | 127.0.0.1 / 8091 | the policy service's HTTP server |
| LEADFLOW_POLICY_MIN_EXPLORATION | 0.05 | least probability of a candidate (at most 1/k) |
| LEADFLOW_POLICY_HOLDOUT | 0.0 | share of conversations on the default edge |
| LEADFLOW_POLICY_KILLED | (none) | flow ids (commas) that take the default edge |
| LEADFLOW_POLICY_HORIZON_SECONDS | 86400 | no lead this long after the start: a failure |
| LEADFLOW_POLICY_IDLE_SECONDS | 1800 | no event this long (log time): abandoned, a failure |
| LEADFLOW_POLICY_REFIT_SECONDS | 600 | seconds between fits of a flow |
| LEADFLOW_POLICY_REFIT_OUTCOMES | 0 | refit sooner after this many new outcomes (0: off) |
| LEADFLOW_POLICY_MIN_OUTCOMES | 100 | new outcomes needed for a first fit or a refit |
| LEADFLOW_POLICY_UPDATE_SECONDS | 30 | publications between fits (0: none) |
| LEADFLOW_POLICY_ONLINE | on | between fits: the online learner; off: conjugate updates |
| LEADFLOW_POLICY_HALF_LIFE | 10000 | the online learner's evidence halves every N conversations |
| LEADFLOW_POLICY_PAIRS | on | the online learner's context interactions (device x source, ...) |
| LEADFLOW_POLICY_CHANGE_HALF_LIFE | 250 | its change detector's short half-life (0: no detector) |
| LEADFLOW_POLICY_DRAW_SCALE | 0.5 | spread of the published draws (1: Thompson on the posterior) |
| LEADFLOW_POLICY_TICK_SECONDS | 1 | how often the schedule looks at the counts |
| LEADFLOW_POLICY_DRAWS / _TUNE / _CHAINS | (the model's) | NUTS draws, tuning steps, chains |
| LEADFLOW_POLICY_FIT_TIMEOUT_SECONDS | 900 | a longer fit is abandoned, its worker killed |
| LEADFLOW_POLICY_MAX_RHAT / _MIN_ESS / _MAX_DIVERGENCES | (the model's) | diagnostics to pass |
| LEADFLOW_POLICY_LOAD_TIMEOUT_SECONDS | 15 | processors: first decision waits for snapshots |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from policy.online_config import OnlineConfig
from policy.reward_conversations import DEFAULT_HORIZON_SECONDS, DEFAULT_IDLE_SECONDS
from policy.snapshot import Guardrails

PRODUCTION_ONLINE = OnlineConfig(
    half_life=10_000.0, pairs=True, change_half_life=250.0, draw_scale=0.5, pair_ard=True
)
"""The online learner as the environment's defaults configure it (issue 16's
simulator runs: docs/policy-simulation.md); OnlineConfig's own defaults are the
plain learner's (no pairs, no detector, half-life 1,000)."""


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be on or off, got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = default if raw == "" else float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be within [{low:g}, {high:g}], got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    raw = env.get(name, "").strip()
    try:
        value = default if raw == "" else int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {raw!r}")
    return value


def _optional_int(env: Mapping[str, str], name: str, low: int) -> int | None:
    return _int(env, name, 0, low) if env.get(name, "").strip() else None


def _optional_float(env: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    return _float(env, name, 0.0, low, high) if env.get(name, "").strip() else None


def _idle(env: Mapping[str, str], horizon: float) -> float:
    """LEADFLOW_POLICY_IDLE_SECONDS: at least a second (a visitor reads and presses),
    at most the horizon when set (a longer one would never end a conversation before
    its window does); the default is capped at a shorter horizon."""
    name = "LEADFLOW_POLICY_IDLE_SECONDS"
    if not env.get(name, "").strip():
        return min(DEFAULT_IDLE_SECONDS, horizon)
    value = _float(env, name, DEFAULT_IDLE_SECONDS, 1.0, 365 * 24 * 3600.0)
    if value > horizon:
        raise ValueError(
            f"{name} must not exceed LEADFLOW_POLICY_HORIZON_SECONDS ({horizon:g}), "
            f"got {env[name].strip()!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class FitSettings:
    """What a fit is asked for. None leaves a knob at ``policy.model.fit_flow``'s own
    default (draws, tuning steps and chains of NUTS; the diagnostics a fit must pass
    to be published)."""

    draws: int | None = None
    tune: int | None = None
    chains: int | None = None
    max_rhat: float | None = None
    min_ess: float | None = None
    max_divergences: int | None = None
    timeout_seconds: float = 900.0

    def options(self) -> dict[str, int | float]:
        """The keyword arguments to pass to ``fit_flow``: the knobs that are set."""
        knobs = {
            "draws": self.draws,
            "tune": self.tune,
            "chains": self.chains,
            "max_rhat": self.max_rhat,
            "min_ess": self.min_ess,
            "max_divergences": self.max_divergences,
        }
        return {name: value for name, value in knobs.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a flow is refitted and when its snapshot gets conjugate updates.

    A flow version is fitted once it has ``min_outcomes`` outcomes, then again
    when ``refit_seconds`` have passed since its last fit or ``refit_outcomes``
    (if > 0) new outcomes arrived, provided it has ``min_outcomes`` new ones.
    Between fits, every ``update_seconds`` (if > 0) its snapshot is updated with
    the outcomes counted since the fit: by the online learner when ``online``
    (with forgetting: ``half_life`` conversations), else conjugately."""

    refit_seconds: float = 600.0
    refit_outcomes: int = 0
    min_outcomes: int = 100
    update_seconds: float = 30.0
    tick_seconds: float = 1.0
    # between fits, the online learner (policy.online) instead of conjugate updates;
    # off here, on from the environment (LEADFLOW_POLICY_ONLINE)
    online: bool = False
    half_life: float = 1000.0  # the learner's evidence halves every this many conversations
    pairs: bool = False  # the learner's context interactions
    pair_ard: bool = False  # their scales learnt per point (faded ones at 0), else weighed
    change_half_life: float = 0.0  # the learner's change detector (0: none)
    draw_scale: float = 1.0  # the learner's published draws' spread

    def online_config(self) -> OnlineConfig:
        """The online learner's configuration (the rest: OnlineConfig's defaults)."""
        return OnlineConfig(
            half_life=self.half_life,
            pairs=self.pairs,
            change_half_life=self.change_half_life,
            draw_scale=self.draw_scale,
            pair_ard=self.pair_ard,
        )


@dataclass(frozen=True, slots=True)
class PolicySettings:
    mode: str = "thompson"
    host: str = "127.0.0.1"
    port: int = 8091
    min_exploration: float = 0.05
    holdout: float = 0.0
    killed: frozenset[str] = frozenset()
    horizon_seconds: float = DEFAULT_HORIZON_SECONDS
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    schedule: Schedule = field(default_factory=Schedule)
    fit: FitSettings = field(default_factory=FitSettings)
    load_timeout_seconds: float = 15.0

    @property
    def enabled(self) -> bool:
        return self.mode == "thompson"

    def guardrails(self, flow_id: str) -> Guardrails:
        return Guardrails(
            min_exploration=self.min_exploration,
            holdout=self.holdout,
            killed=flow_id in self.killed,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PolicySettings:
        env = os.environ if env is None else env
        mode = env.get("LEADFLOW_POLICY", "thompson").strip().lower() or "thompson"
        if mode not in ("thompson", "uniform"):
            raise ValueError(f"LEADFLOW_POLICY must be thompson or uniform, got {mode!r}")
        names = env.get("LEADFLOW_POLICY_KILLED", "").split(",")
        killed = frozenset(name.strip() for name in names if name.strip())
        day = 365 * 24 * 3600.0
        horizon = _float(
            env, "LEADFLOW_POLICY_HORIZON_SECONDS", DEFAULT_HORIZON_SECONDS, 0.001, day
        )
        return cls(
            mode=mode,
            host=env.get("LEADFLOW_POLICY_HOST", "127.0.0.1"),
            port=_int(env, "LEADFLOW_POLICY_PORT", 8091, 0),
            min_exploration=_float(env, "LEADFLOW_POLICY_MIN_EXPLORATION", 0.05, 0.0, 1.0),
            holdout=_float(env, "LEADFLOW_POLICY_HOLDOUT", 0.0, 0.0, 1.0),
            killed=killed,
            horizon_seconds=horizon,
            idle_seconds=_idle(env, horizon),
            schedule=Schedule(
                online=_switch(env, "LEADFLOW_POLICY_ONLINE", True),
                half_life=_float(
                    env, "LEADFLOW_POLICY_HALF_LIFE", PRODUCTION_ONLINE.half_life, 10.0, 1e9
                ),
                pairs=_switch(env, "LEADFLOW_POLICY_PAIRS", PRODUCTION_ONLINE.pairs),
                pair_ard=_switch(env, "LEADFLOW_POLICY_PAIR_SCALES", PRODUCTION_ONLINE.pair_ard),
                change_half_life=_float(
                    env,
                    "LEADFLOW_POLICY_CHANGE_HALF_LIFE",
                    PRODUCTION_ONLINE.change_half_life,
                    0.0,
                    1e9,
                ),
                draw_scale=_float(
                    env, "LEADFLOW_POLICY_DRAW_SCALE", PRODUCTION_ONLINE.draw_scale, 0.0, 1.0
                ),
                refit_seconds=_float(env, "LEADFLOW_POLICY_REFIT_SECONDS", 600.0, 0.0, day),
                refit_outcomes=_int(env, "LEADFLOW_POLICY_REFIT_OUTCOMES", 0, 0),
                min_outcomes=_int(env, "LEADFLOW_POLICY_MIN_OUTCOMES", 100, 1),
                update_seconds=_float(env, "LEADFLOW_POLICY_UPDATE_SECONDS", 30.0, 0.0, day),
                tick_seconds=_float(env, "LEADFLOW_POLICY_TICK_SECONDS", 1.0, 0.01, 3600.0),
            ),
            fit=FitSettings(
                draws=_optional_int(env, "LEADFLOW_POLICY_DRAWS", 10),
                tune=_optional_int(env, "LEADFLOW_POLICY_TUNE", 0),
                chains=_optional_int(env, "LEADFLOW_POLICY_CHAINS", 2),  # r-hat needs 2
                max_rhat=_optional_float(env, "LEADFLOW_POLICY_MAX_RHAT", 1.0, 2.0),
                min_ess=_optional_float(env, "LEADFLOW_POLICY_MIN_ESS", 0.0, 1e9),
                max_divergences=_optional_int(env, "LEADFLOW_POLICY_MAX_DIVERGENCES", 0),
                timeout_seconds=_float(env, "LEADFLOW_POLICY_FIT_TIMEOUT_SECONDS", 900.0, 1.0, day),
            ),
            load_timeout_seconds=_float(
                env, "LEADFLOW_POLICY_LOAD_TIMEOUT_SECONDS", 15.0, 0.0, 3600.0
            ),
        )
