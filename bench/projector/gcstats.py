"""Time spent in the garbage collector during a run (``gc.callbacks``)."""

from __future__ import annotations

import gc
import time
from types import TracebackType
from typing import Any

from bench.procstats import Json


class GcTimer:
    """Wall seconds inside collections, and how many of each generation, while entered."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._callback)

    def as_json(self, events: int) -> Json:
        return {
            "seconds": round(self.seconds, 3),
            "ms_per_1k_events": round(self.seconds * 1e6 / events, 3) if events else None,
            "collections_by_generation": self.collections,
        }
