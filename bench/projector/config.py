"""The knobs of ``python -m bench.projector`` in one frozen value, and the targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "projector.json"
DEFAULT_CACHE = Path.home() / ".cache" / "leadflow" / "bench"

TARGET_EVENTS_PER_S = 20_000.0  # the projector, pipelined, on one core
TARGET_REPLAY_EVENTS = 1_000_000
TARGET_REPLAY_SECONDS = 60.0  # a full replay of TARGET_REPLAY_EVENTS


@dataclass(frozen=True, slots=True)
class Config:
    events: int = 200_000  # engine part: the same events, pipelined and one by one
    replay_events: int = 1_000_000  # Kafka replay part (0: skip it)
    batch: int = 2_000  # events per consumed batch (one apply round trip)
    reps: int = 3  # pipelined and baseline runs, alternated
    baseline: bool = True
    sample: int = 200  # conversations read back and compared after each pair of runs
    partitions: int = 12
    seed: int = 7
    chunk_conversations: int = 300  # conversations per simulate() call
    interleave: int = 4  # chunks merged by time into one stretch of the log
    cache_dir: Path = DEFAULT_CACHE
    out: Path = DEFAULT_OUT
    tmp_root: Path | None = None
    py_spy_dir: Path | None = None  # profile an extra, unjudged run of each part

    @property
    def markdown_out(self) -> Path:
        return self.out.with_suffix(".md")

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out
