"""Percentiles, CPU per process from /proc, and what the numbers were measured on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.procstats import (
    Json,
    cpu_model,
    machine_cpu_seconds,
    process_cpu_seconds,
    summarize,
)

__all__ = ["Json", "machine_cpu_seconds", "process_cpu_seconds", "summarize"]


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    at: float
    processes: dict[str, float | None]
    machine: float | None

    @classmethod
    def take(cls, pids: Mapping[str, int | None]) -> CpuSnapshot:
        procs = {
            name: None if pid is None else process_cpu_seconds(pid) for name, pid in pids.items()
        }
        return cls(time.monotonic(), procs, machine_cpu_seconds())


def cpu_cores(before: CpuSnapshot, after: CpuSnapshot) -> Json:
    """Cores kept busy per process between two snapshots, and by everything else."""
    wall = max(after.at - before.at, 1e-9)
    out: Json = {}
    known = 0.0
    for name, end in after.processes.items():
        start = before.processes.get(name)
        if start is None or end is None:
            out[name] = None
            continue
        out[name] = round((end - start) / wall, 2)
        known += end - start
    if before.machine is not None and after.machine is not None:
        total = after.machine - before.machine
        out["others"] = round(max(0.0, total - known) / wall, 2)
        out["machine"] = round(total / wall, 2)
    return out


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def kafka_jars() -> list[str]:
    """The broker's Kafka jars (the local broker's Maven cache), e.g. kafka_2.13-4.1.1.jar."""
    home = os.environ.get("LEADFLOW_KAFKA_HOME")
    folder = (Path(home) if home else Path.home() / ".cache" / "leadflow" / "kafka") / "libs"
    with contextlib.suppress(OSError):
        return sorted(p.name for p in folder.glob("kafka*.jar"))
    return []


def machine_info() -> Json:
    model = cpu_model()
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1e6, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
        "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def _tool_version(*cmd: str) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        return lines[0] if lines else None
    return None


def versions() -> Json:
    return {
        "java": _tool_version("java", "-version"),
        "redis-server": _tool_version("redis-server", "--version"),
        "aiokafka": _version("aiokafka"),
        "aiohttp": _version("aiohttp"),
        "orjson": _version("orjson"),
        "redis-py": _version("redis"),
        "kafka_jars": kafka_jars(),
    }


def cpu_ms_per(cores: Json, process: str, per_s: float | None) -> float | None:
    """CPU milliseconds ``process`` spent per unit of work (e.g. per command)."""
    used = cores.get(process)
    if not isinstance(used, int | float) or not per_s:
        return None
    return round(used * 1000 / per_s, 3)
