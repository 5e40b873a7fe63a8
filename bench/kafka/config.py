"""What one run measures: the knobs of ``python -m bench.kafka`` in one frozen value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "kafka.json"
FLOWS = ("solar-quote", "saas-demo", "insurance-quote")
SITE = "demo"
ORIGIN = "http://localhost"
REPLY_TIMEOUT_S = 15.0  # past the gateway's own 10 s, so its `unavailable` shows first

# Targets (judged at the paced rate; throughput on the saturated runs).
TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0
TARGET_PRESSES_PER_S = 2000.0
TARGET_RAW_RATIO = 3.0
# Issue 17: one visitor's p50 against the raw round trip of the same run; one processor
# worker's commands/s (the processor alone, and per CPU-second of it); the CPU of
# gateway + processor + broker per command at the paced rate.
TARGET_SINGLE_RAW_RATIO = 2.0
TARGET_PROCESSOR_COMMANDS_PER_S = 2500.0
TARGET_CPU_MS_PER_COMMAND = 1.0

WARMUP_ROUND_S = 10.0
WARMUP_MIN_ROUNDS = 3
WARMUP_NEW_LOW = 0.10  # a round more than 10% below every earlier one: still falling


def settled(broker_ms: Sequence[float | None]) -> bool:
    """Whether the broker's CPU per command (one value per warm-up round) stopped
    falling: at least :data:`WARMUP_MIN_ROUNDS` rounds, and the last is not a new
    low by more than :data:`WARMUP_NEW_LOW` (a slow but steady fall never settles)."""
    values = [v for v in broker_ms if v is not None]
    if len(values) < WARMUP_MIN_ROUNDS or len(values) < len(broker_ms):
        return False
    return values[-1] >= (1.0 - WARMUP_NEW_LOW) * min(values[:-1])


@dataclass(frozen=True, slots=True)
class Config:
    visitors: tuple[int, ...] = (50, 200, 500, 2000)
    rate: float = 500.0  # offered presses/s of the paced runs
    modes: tuple[str, ...] = ("paced", "saturated")
    paced_seconds: float = 6.0
    saturated_seconds: float = 5.0
    raw_seconds: float = 3.0
    warmup_seconds: float = 180.0  # at most: until the broker's JIT settled
    gateways: int = 1
    partitions: int = 4
    burst: int = 3000  # commands of each processor-alone burst (0: skip)
    raw: bool = True
    relay: bool = True  # the two-hop raw round trip through a relay process
    linger_ms: int = 0  # raw producer, as the gateway's
    fetch_max_wait_ms: int = 5  # raw consumer
    profile: bool = True  # py-spy the processor and gateway in an extra, unjudged run
    profile_seconds: float = 5.0
    profile_visitors: int = 200
    seed: int = 7
    out: Path = DEFAULT_OUT
    tmp_root: Path | None = None
    log_level: str = "info"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def reply_partitions(self) -> int:
        """One per gateway, plus one the processor-alone burst reads."""
        return self.gateways + 1

    @property
    def burst_reply_partition(self) -> int:
        return self.gateways

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["out"] = str(self.out)
        out["tmp_root"] = None if self.tmp_root is None else str(self.tmp_root)
        out["visitors"] = list(self.visitors)
        out["modes"] = list(self.modes)
        return out
