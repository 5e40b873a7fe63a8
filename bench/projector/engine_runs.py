"""Part 1: the same events through ``Projector.project`` into Redis, two ways.

* ``pipelined``: consumed batches of ``batch`` events, one ``project`` call each
  (the engine's point: one ``apply`` round trip per batch);
* ``baseline``: one awaited ``project([event])`` per event, a round trip each.

Each run writes a fresh key prefix of its own with a live projector's settings
(``live=True``, a 20,000-view cache), as ``leadflow run projector`` does. CPU
is read from /proc around the run: this process (the projector: one Python
thread), Redis (its pid, when we started it) and the whole machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from bench.kafka.sysstats import CpuSnapshot, cpu_cores
from bench.procstats import Json
from bench.projector.gcstats import GcTimer
from projector.engine import BatchResult, Projector
from projector.redis_store import RedisReadModel
from schemas.events import Event

MODES = ("pipelined", "baseline")


def pids(redis_pid: int | None, broker_pid: int | None = None) -> dict[str, int | None]:
    out: dict[str, int | None] = {"projector": os.getpid(), "redis": redis_pid}
    if broker_pid is not None:
        out["broker"] = broker_pid
    return out


def cpu_block(before: CpuSnapshot, after: CpuSnapshot, events: int) -> Json:
    """Cores kept busy per process, and CPU seconds per 1,000 events."""
    cores = cpu_cores(before, after)
    seconds: Json = {}
    for name, start in before.processes.items():
        end = after.processes.get(name)
        seconds[name] = None if start is None or end is None else round(end - start, 3)
    per_1k = {
        name: None if used is None or not events else round(used * 1000 / events, 4)
        for name, used in seconds.items()
    }
    return {"cores": cores, "cpu_s": seconds, "cpu_s_per_1k_events": per_1k}


def _add(total: BatchResult, part: BatchResult) -> None:
    total.events += part.events
    total.applied += part.applied
    total.duplicates += part.duplicates
    total.conflicts += part.conflicts


async def project_run(
    client: Redis,
    prefix: str,
    events: Sequence[Event],
    mode: str,
    batch: int,
    redis_pid: int | None,
) -> tuple[Json, RedisReadModel]:
    """Project ``events`` into a fresh prefix; the measurements and the store."""
    store = RedisReadModel(client, prefix=prefix)
    namespace = await store.current_namespace()
    projector = Projector(store, namespace, live=True, cache_size=20_000)
    total = BatchResult()
    calls = 0
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    before = CpuSnapshot.take(pids(redis_pid))
    began = time.perf_counter()
    with GcTimer() as collector:
        if mode == "pipelined":
            for i in range(0, len(events), batch):
                _add(total, await projector.project(events[i : i + batch]))
                calls += 1
        else:
            for event in events:
                _add(total, await projector.project([event]))
                calls += 1
    wall = time.perf_counter() - began
    after = CpuSnapshot.take(pids(redis_pid))
    run: Json = {
        "mode": mode,
        "prefix": prefix,
        "namespace": namespace,
        "events": len(events),
        "project_calls": calls,
        "wall_s": round(wall, 3),
        "events_per_s": round(len(events) / wall, 1),
        "write_sets": {
            "applied": total.applied,
            "duplicates": total.duplicates,
            "conflicts": total.conflicts,
        },
        **cpu_block(before, after, len(events)),
        "gc": collector.as_json(len(events)),
    }
    used = run["cpu_s"].get("projector")
    run["events_per_projector_cpu_s"] = round(len(events) / used, 1) if used else None
    return run, store
