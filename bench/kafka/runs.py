"""One measured run: clients under a ``Pace`` for some seconds, with the CPU of every
process sampled around it and the load generator's own event-loop lag."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.kafka.config import ROOT
from bench.kafka.metrics import delta_quantiles, scrape
from bench.kafka.pacing import Pace, Recorder
from bench.kafka.raw import RawBus, raw_client
from bench.kafka.sysstats import CpuSnapshot, Json, cpu_cores, cpu_ms_per, summarize
from bench.kafka.visitors import Visitor, visitor_loop

LAG_INTERVAL_S = 0.005
Client = Callable[[int, int, int, Recorder], Awaitable[int]]  # (i, t0, deadline) -> resyncs


async def _watch_lag(samples: list[int], stop: asyncio.Event) -> None:
    interval = int(LAG_INTERVAL_S * 1e9)
    while not stop.is_set():
        before = time.perf_counter_ns()
        await asyncio.sleep(LAG_INTERVAL_S)
        samples.append(max(0, time.perf_counter_ns() - before - interval))


async def measure(
    pace: Pace, seconds: float, client: Client, pids: Mapping[str, int | None]
) -> Json:
    """Run ``pace.clients`` clients until the deadline; the run's JSON, CPU included."""
    rec = Recorder()
    lag: list[int] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_lag(lag, stop))
    before = CpuSnapshot.take(pids)
    t0 = time.perf_counter_ns()
    deadline = t0 + int(seconds * 1e9)
    resyncs = await asyncio.gather(*(client(i, t0, deadline, rec) for i in range(pace.clients)))
    wall = (time.perf_counter_ns() - t0) / 1e9
    after = CpuSnapshot.take(pids)
    stop.set()
    await watcher
    out = rec.result(pace, seconds, wall, sum(resyncs))
    if rec.traces:
        out["_traces"] = rec.traces  # replaced by the stage breakdown (stages.py)
    out["cpu_cores"] = cpu_cores(before, after)
    out["loadgen_loop_lag_ms"] = summarize(lag)
    return out


@dataclass
class LeadflowTarget:
    session: aiohttp.ClientSession
    ports: list[int]
    pids: Mapping[str, int | None]

    async def run(self, visitors: list[Visitor], pace: Pace, seconds: float) -> Json:
        async def client(i: int, t0: int, deadline: int, rec: Recorder) -> int:
            return await visitor_loop(visitors[i], self.session, pace, t0, deadline, rec)

        before = [await scrape(self.session, port) for port in self.ports]
        out = await measure(pace, seconds, client, self.pids)
        after = [await scrape(self.session, port) for port in self.ports]
        out["gateway_histogram"] = delta_quantiles(before, after)
        per_s = out["commands_per_s"]
        out["cpu_ms_per_command"] = {
            name: cpu_ms_per(out["cpu_cores"], name, per_s)
            for name in out["cpu_cores"]
            if name in ("broker", "processor") or name.startswith("gateway")
        }
        return out


async def raw_run(
    bus: RawBus, pace: Pace, seconds: float, seed: int, pids: Mapping[str, int | None]
) -> Json:
    async def client(i: int, t0: int, deadline: int, rec: Recorder) -> int:
        rng = random.Random(seed * 7919 + i)
        return await raw_client(bus, pace, rng, t0, deadline, rec)

    return await measure(pace, seconds, client, pids)


def start_relay(
    bootstrap: str, topics: tuple[str, str, str], log_path: Path, timeout: float = 30.0
) -> subprocess.Popen[bytes]:
    """``bench.kafka.relay`` in its own process (as the processor is), once it is ready."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.kafka.relay", bootstrap, *topics],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if "relay ready" in log_path.read_text(errors="replace"):
            return proc
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"the relay did not start:\n{log_path.read_text(errors='replace')[-2000:]}")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
