"""The benchmark's log: ``n`` conversations of one flow in an embedded SQLite
log, generated once with the real decider and cached.

:func:`tests.support.traffic.simulate` plays the shipped flows in turn, ``chunk``
visitors at a time (each chunk its own seed and id prefix, about ``chunk``
conversations in flight); only the conversations of ``flow`` are appended, in
log order, through :class:`SqliteEventLog` (without read models: the report
reads the ``events`` table only). The file is cached under
``~/.cache/leadflow/bench/`` by everything that shapes it.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from schemas.events import ConversationStarted, Event
from services.embedded.sqlite_eventlog import SqliteEventLog
from tests.support.traffic import simulate

FORMAT = 1  # bump when the generation changes: old cache directories are then ignored
APPEND = 5_000


@dataclass(frozen=True, slots=True)
class LogSpec:
    flow: str
    conversations: int
    seed: int
    chunk: int

    def data_dir(self, cache_dir: Path) -> Path:
        name = f"report-{self.flow}-n{self.conversations}-seed{self.seed}-c{self.chunk}-v{FORMAT}"
        return cache_dir / name


@dataclass(frozen=True, slots=True)
class LogInfo:
    data_dir: Path
    events: int
    conversations: int
    cached: bool
    generation_s: float


def _of_flow(events: list[Event], flow: str, budget: int) -> tuple[list[Event], int]:
    """The events of (at most ``budget``) conversations of ``flow``, in log order."""
    chosen: set[str] = set()
    for event in events:
        started = isinstance(event, ConversationStarted) and event.flow_id == flow
        if started and len(chosen) < budget:
            chosen.add(event.conversation_id)
    return [e for e in events if e.conversation_id in chosen], len(chosen)


async def _generate(spec: LogSpec, path: Path) -> int:
    log = SqliteEventLog(path)
    log.start()
    written = conversations = index = 0
    try:
        while conversations < spec.conversations:
            seed = spec.seed * 1_000_003 + index
            traffic = await simulate(spec.chunk, seed=seed, prefix=f"r{spec.seed}k{index:06d}-")
            index += 1
            kept, n = _of_flow(traffic.events, spec.flow, spec.conversations - conversations)
            conversations += n
            for i in range(0, len(kept), APPEND):
                await log.append(kept[i : i + APPEND])
            written += len(kept)
    finally:
        log.close()
    return written


def _count(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def ensure_log(spec: LogSpec, cache_dir: Path) -> LogInfo:
    data_dir = spec.data_dir(cache_dir)
    if (data_dir / "events.db").exists():
        return LogInfo(data_dir, _count(data_dir / "events.db"), spec.conversations, True, 0.0)
    tmp = data_dir.with_name(data_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    print(f"generating {spec.conversations:,} {spec.flow} conversations into {data_dir} ...")
    began = time.perf_counter()
    events = asyncio.run(_generate(spec, tmp / "events.db"))
    tmp.rename(data_dir)
    took = time.perf_counter() - began
    print(f"  {events:,} events in {took:.1f} s", flush=True)
    return LogInfo(data_dir, events, spec.conversations, False, took)
