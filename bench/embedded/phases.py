"""What each phase offers the server: think time between commands, and for how long.

The load generator is a closed loop of ``--visitors`` visitors, each thinking
for a random time before every command. The offered rate therefore follows from
the think time: about ``visitors / mean think`` commands per second, of which
``PRESS_SHARE`` are presses or leads (the rest are conversation starts).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

# The example flows take 5.1 presses + leads per conversation start on average
# (measured), so about 5.1 / 6.1 of the commands are presses.
PRESS_SHARE = 0.83
DEFAULT_SWEEP_RATES = (100.0, 200.0, 400.0, 800.0)


@dataclass(frozen=True, slots=True)
class Phase:
    """One load level. ``judged``: the latency targets apply to this phase."""

    name: str
    think_min_ms: float
    think_max_ms: float
    seconds: float
    judged: bool = False

    def think_s(self, rng: random.Random) -> float:
        if self.think_max_ms <= 0:
            return 0.0
        return rng.uniform(self.think_min_ms, self.think_max_ms) / 1000.0

    def arrival_s(self, rng: random.Random) -> float:
        """First arrivals spread over one think time, not a stampede at t=0."""
        return rng.uniform(0.0, self.think_max_ms) / 1000.0 if self.think_max_ms > 0 else 0.0

    def describe(self) -> str:
        if self.think_max_ms <= 0:
            pacing = "no think time"
        elif self.think_min_ms == self.think_max_ms:
            pacing = f"think {self.think_min_ms:g} ms"
        else:
            pacing = f"think {self.think_min_ms:g}-{self.think_max_ms:g} ms"
        return f"{pacing}, {self.seconds:g} s"

    def nominal_rate(self, visitors: int) -> float | None:
        """Presses/s the pacing offers if replies took no time (None: unpaced)."""
        mean_s = (self.think_min_ms + self.think_max_ms) / 2000.0
        return None if mean_s <= 0 else visitors * PRESS_SHARE / mean_s


@dataclass(frozen=True, slots=True)
class PhaseSettings:
    """The command-line knobs the phases are built from."""

    human_think_ms: tuple[float, float]
    busy_think_ms: tuple[float, float]
    saturated_think_ms: float
    human_seconds: float
    load_seconds: float


def default_phases(settings: PhaseSettings) -> dict[str, Phase]:
    """``human`` (the target: people reading questions), ``busy`` and ``saturated``."""
    return {
        "human": Phase("human", *settings.human_think_ms, settings.human_seconds, judged=True),
        "busy": Phase("busy", *settings.busy_think_ms, settings.load_seconds),
        "saturated": Phase(
            "saturated",
            settings.saturated_think_ms,
            settings.saturated_think_ms,
            settings.load_seconds,
        ),
    }


def select_phases(names: str, settings: PhaseSettings) -> list[Phase]:
    known = default_phases(settings)
    chosen: list[Phase] = []
    for name in filter(None, (part.strip() for part in names.split(","))):
        if name not in known:
            raise SystemExit(f"unknown phase {name!r} (choose from {', '.join(known)})")
        chosen.append(known[name])
    return chosen


def sweep_phases(rates: list[float], visitors: int, seconds: float) -> list[Phase]:
    """One short phase per offered rate: think uniform in mean * [0.5, 1.5]."""
    phases = []
    for rate in sorted(rates):
        mean_ms = visitors * PRESS_SHARE / rate * 1000.0
        phases.append(
            Phase(
                f"sweep-{rate:g}",
                round(mean_ms * 0.5),
                round(mean_ms * 1.5),
                seconds,
            )
        )
    return phases


def parse_range(text: str) -> tuple[float, float]:
    """``MIN-MAX`` (or a single value) in ms, for argparse."""
    low, _, high = text.partition("-")
    try:
        lo, hi = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad range {text!r} (want MIN-MAX ms)") from None
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"bad range {text!r} (want MIN-MAX ms)")
    return lo, hi


def parse_rates(text: str) -> list[float]:
    """Comma-separated positive presses/s, for argparse."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad rates {text!r} (want e.g. 100,200)") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"bad rates {text!r} (want positive presses/s)")
    return rates
