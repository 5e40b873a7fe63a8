"""Offered load and what a run records, shared by the WebSocket and raw Kafka clients.

* ``paced``: open-loop-ish. Each client keeps a schedule: its next command is due a
  random think time (uniform 0.5-1.5 x mean, mean = clients / rate) after the previous
  one was *due*, not after its reply came, so the offered rate is the target whatever
  the latency. A client whose reply comes after its next due time sends at once; its
  latency is then also counted from the due time (``*_sched``: corrected for
  coordinated omission). A client more than ``MAX_BEHIND_S`` behind drops the missed
  slots (``resyncs``).
* ``saturated``: think 0, the next command as soon as the reply is complete (closed
  loop: the throughput is the system's ceiling, the latency is queueing).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.kafka.stages import Trace
from bench.kafka.sysstats import Json, summarize

MAX_BEHIND_S = 1.0
MAX_EXAMPLES = 10


@dataclass(frozen=True, slots=True)
class Pace:
    mode: str  # "paced" or "saturated"
    clients: int
    rate: float = 0.0  # paced: the offered commands/s over all clients

    @property
    def mean_think_s(self) -> float:
        return 0.0 if self.mode == "saturated" else self.clients / self.rate

    def to_json(self) -> Json:
        out: Json = {"mode": self.mode, "clients": self.clients}
        if self.mode == "paced":
            out["offered_per_s"] = self.rate
            out["think_ms"] = [round(500 * self.mean_think_s), round(1500 * self.mean_think_s)]
        return out


@dataclass(slots=True)
class Schedule:
    """One client's due times; ``next()`` sleeps until the next one."""

    pace: Pace
    rng: random.Random
    deadline_ns: int
    due_ns: int
    resyncs: int = 0

    @classmethod
    def begin(cls, pace: Pace, rng: random.Random, t0_ns: int, deadline_ns: int) -> Schedule:
        offset = rng.uniform(0.0, pace.mean_think_s)  # spread the first commands
        return cls(pace, rng, deadline_ns, t0_ns + int(offset * 1e9))

    async def next(self) -> int | None:
        """Wait for the next due time and return it (ns), or None past the deadline."""
        now = time.perf_counter_ns()
        if self.pace.mode == "saturated":
            return now if now < self.deadline_ns else None
        if self.due_ns >= self.deadline_ns:
            return None
        if self.due_ns > now:
            await asyncio.sleep((self.due_ns - now) / 1e9)
        elif now - self.due_ns > MAX_BEHIND_S * 1e9:
            self.due_ns, self.resyncs = now, self.resyncs + 1
        due = self.due_ns
        think = self.rng.uniform(0.5, 1.5) * self.pace.mean_think_s
        self.due_ns = due + int(think * 1e9)
        return due


@dataclass
class Recorder:
    """Latency samples (ns, by series), counts and failures of one run."""

    series: dict[str, list[int]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)  # answered presses, for stages.py

    def add(self, name: str, ns: int) -> None:
        self.series.setdefault(name, []).append(ns)

    def error(self, code: str, detail: str) -> None:
        self.errors[code] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{code}: {detail[:300]}")

    def result(self, pace: Pace, seconds: float, wall_s: float, resyncs: int) -> Json:
        """The JSON of one run; ``presses_per_s`` counts answered presses and leads."""
        answered = self.counts["press"] + self.counts["lead"] + self.counts["raw"]
        return {
            "pace": pace.to_json(),
            "seconds": seconds,
            "wall_s": round(wall_s, 3),
            "counts": dict(self.counts),
            "presses_per_s": round(answered / seconds, 1),
            "commands_per_s": round((answered + self.counts["start"]) / seconds, 1),
            "latency_ms": {name: summarize(samples) for name, samples in self.series.items()},
            "errors": dict(self.errors),
            "error_examples": self.examples,
            "schedule_resyncs": resyncs,
        }
