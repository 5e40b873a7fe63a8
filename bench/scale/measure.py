"""What the coordinator reads from /proc and from the gateways: RSS, CPU windows,
open connections (``leadflow_gateway_open_connections`` on each /metrics)."""

from __future__ import annotations

import contextlib
import http.client
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procstats import machine_cpu_seconds, process_cpu_seconds

Json = dict[str, Any]


def rss_kib(pid: int) -> int | None:
    """Resident set size (VmRSS) of a process, KiB."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def rss_all(pids: dict[str, int]) -> dict[str, int | None]:
    return {name: rss_kib(pid) for name, pid in pids.items()}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class CpuWindow:
    """CPU seconds per wall second of each process (and the machine) over a window."""

    pids: dict[str, int]
    began: float = field(default_factory=time.monotonic)
    before: dict[str, float | None] = field(default_factory=dict)
    machine_before: float | None = None
    load_before: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.before = {n: process_cpu_seconds(p) for n, p in self.pids.items()}
        self.machine_before = machine_cpu_seconds()
        self.load_before = loadavg()

    def end(self) -> Json:
        wall = time.monotonic() - self.began
        cores: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            now, then = process_cpu_seconds(pid), self.before.get(name)
            cores[name] = None if now is None or then is None else round((now - then) / wall, 3)
        machine = machine_cpu_seconds()
        ours = sum(v for v in cores.values() if v is not None)
        total = (
            None
            if machine is None or self.machine_before is None
            else round((machine - self.machine_before) / wall, 3)
        )
        return {
            "seconds": round(wall, 1),
            "cores": cores,
            "ours": round(ours, 3),
            "machine": total,
            "others": None if total is None else round(total - ours, 3),
            "loadavg_before": self.load_before,
            "loadavg_after": loadavg(),
        }


def open_connections(metrics_port: int, timeout: float = 5.0) -> int | None:
    """The gateway's open WebSocket count, from its /metrics (None: unreachable)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return parse_gauge(text, "leadflow_gateway_open_connections")


def parse_gauge(text: str, name: str) -> int | None:
    """The value of an unlabelled gauge in Prometheus text (None: absent)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            with contextlib.suppress(ValueError):
                return int(float(line.rsplit(" ", 1)[1]))
    return None
