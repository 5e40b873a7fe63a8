"""py-spy on this very process (the projector runs here), for the unjudged profiled runs.

``--py-spy-dir DIR`` adds one more pipelined engine run and one more replay,
each sampled by ``py-spy record`` (raw collapsed stacks in ``DIR``), summarised
with ``bench.kafka.profiling`` (where the CPU went: leaf frames, and our
functions anywhere on the stack). py-spy takes CPU from the same two cores: a
profiled run's rate is not a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from bench.kafka import profiling
from bench.procstats import Json


class Spy:
    def __init__(self, out: Path) -> None:
        self.out = out
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Spy:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await profiling.record(os.getpid(), 600, self.out)
        await asyncio.sleep(1.0)  # let py-spy attach before the work starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        try:
            await asyncio.wait_for(proc.wait(), timeout=30)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def summary(self) -> Json:
        out: Json = {"file": str(self.out)}
        out.update(profiling.summarize(self.out, top=20))
        return out


def available() -> bool:
    return profiling.available()
