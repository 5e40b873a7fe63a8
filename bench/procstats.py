"""What both benchmarks measure the same way: latency summaries and CPU time from /proc."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Json = dict[str, Any]
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def summarize(samples_ns: Sequence[int]) -> Json:
    """count, mean, min, p50/p90/p95/p99/p99.9 (nearest rank) and max, in ms."""
    n = len(samples_ns)
    if n == 0:
        return {"count": 0}
    ordered = sorted(samples_ns)
    out: Json = {
        "count": n,
        "mean_ms": round(sum(ordered) / n / 1e6, 4),
        "min_ms": round(ordered[0] / 1e6, 4),
    }
    for name, q in PERCENTILES:
        out[f"{name}_ms"] = round(ordered[max(0, math.ceil(q * n) - 1)] / 1e6, 4)
    out["max_ms"] = round(ordered[-1] / 1e6, 4)
    return out


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu_seconds() -> float | None:
    """Busy CPU time of the whole machine (all processes, all cores), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def git_state(*paths: str) -> Json:
    """The commit a benchmark measured, and which files under ``paths`` differed from it."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def run(*args: str) -> str:
        proc = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=root, timeout=10, check=False
        )
        return proc.stdout.strip()

    try:
        return {
            "commit": run("rev-parse", "HEAD"),
            "changed": run("status", "--porcelain", "--", *paths).splitlines(),
        }
    except (OSError, subprocess.SubprocessError):
        return {}
