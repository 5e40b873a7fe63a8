"""Percentiles, and who used the CPU: the server, the load generator or the rest.

On a 2-core machine the server, the load generator and everything else share
the cores, so every run records how many cores each of them kept busy: a
latency is only meaningful next to that.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from bench.procstats import (
    Json,
    cpu_model,
    machine_cpu_seconds,
    process_cpu_seconds,
    summarize,
)

__all__ = ["Json", "machine_cpu_seconds", "process_cpu_seconds", "summarize"]
LAG_INTERVAL_S = 0.005
IO_KEYS = ("rchar", "wchar", "read_bytes", "write_bytes")


def ratio(ours: Json, baseline: Json, key: str) -> float | None:
    """``ours[key] / baseline[key]`` rounded, or None when either is missing or zero."""
    a, b = ours.get(key), baseline.get(key)
    if not isinstance(a, float | int) or not isinstance(b, float | int) or b <= 0:
        return None
    return round(a / b, 2)


def io_counters(pid: int) -> dict[str, int]:
    """``/proc/<pid>/io``: bytes written by syscalls (wchar) and to storage (write_bytes)."""
    try:
        lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v) for k, _, v in (line.partition(": ") for line in lines)}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU and I/O counters at one instant: the server, this process, the machine."""

    server_cpu_s: float | None
    loadgen_cpu_s: float
    machine_cpu_s: float | None
    server_io: dict[str, int]

    @classmethod
    def take(cls, server_pid: int) -> Snapshot:
        return cls(
            process_cpu_seconds(server_pid),
            time.process_time(),
            machine_cpu_seconds(),
            io_counters(server_pid),
        )


def _minus(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def cpu_usage(before: Snapshot, after: Snapshot, wall_s: float) -> Json:
    """Cores kept busy by the server, the load generator and everything else."""
    server = _minus(after.server_cpu_s, before.server_cpu_s)
    loadgen = after.loadgen_cpu_s - before.loadgen_cpu_s
    machine = _minus(after.machine_cpu_s, before.machine_cpu_s)
    others = None if machine is None or server is None else max(0.0, machine - server - loadgen)

    def cores(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / wall_s, 2)

    return {
        "server_s": None if server is None else round(server, 2),
        "server_cores": cores(server),
        "loadgen_s": round(loadgen, 2),
        "loadgen_cores": cores(loadgen),
        "other_processes_cores": cores(others),
    }


def io_usage(before: Snapshot, after: Snapshot) -> Json:
    """MB the server read and wrote during the run (syscalls and storage)."""
    b, a = before.server_io, after.server_io
    return {key: round((a[key] - b[key]) / 1e6, 2) for key in IO_KEYS if key in a and key in b}


async def watch_loop_lag(samples: list[int], stop: asyncio.Event) -> None:
    """How late the load generator's own event loop wakes up (its share of the noise)."""
    interval = int(LAG_INTERVAL_S * 1e9)
    while not stop.is_set():
        before = time.perf_counter_ns()
        await asyncio.sleep(LAG_INTERVAL_S)
        samples.append(max(0, time.perf_counter_ns() - before - interval))


def machine_info() -> Json:
    """What the numbers were measured on, including the load average at the start."""
    model = cpu_model()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "nproc": affinity or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "aiohttp": aiohttp.__version__,
        "orjson": orjson.__version__,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
