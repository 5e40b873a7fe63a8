"""One measured run: one phase against one server, with its CPU, I/O and loop lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp

from bench.embedded import metrics
from bench.embedded.phases import Phase
from bench.embedded.profiling import Stop, start_py_spy
from bench.embedded.protocol import Recorder
from bench.embedded.servers import Server
from bench.embedded.stats import (
    Json,
    Snapshot,
    cpu_usage,
    io_usage,
    summarize,
    watch_loop_lag,
)
from bench.embedded.visitors import RunContext, Script, echo_visitor, leadflow_visitor

Target = Literal["leadflow", "echo"]
PlayOne = Callable[[RunContext, int], Awaitable[Script]]
# The echo replay follows Leadflow's think times; this only caps a runaway replay.
ECHO_DEADLINE_FACTOR = 2.0
PY_SPY_ATTACH_S = 1.0


@dataclass(frozen=True, slots=True)
class Run:
    summary: Json
    scripts: list[Script]


def _latency(rec: Recorder) -> Json:
    latency = {name: summarize(rec.series[name]) for name in sorted(rec.series)}
    presses = rec.series.get("press", []) + rec.series.get("answer", [])
    presses += rec.series.get("lead", [])
    latency["press_to_reply"] = summarize(presses)
    return latency


def _summary(target: Target, server: Server, rec: Recorder, wall_s: float) -> Json:
    presses = rec.presses_ok + rec.answers_ok + rec.leads_ok  # the visitor's turns
    return {
        "target": target,
        "url": server.ws_url,
        "wall_s": round(wall_s, 3),
        "rounds_completed": rec.rounds_completed,
        "rounds_aborted": rec.rounds_aborted,
        "rounds_cut_by_deadline": rec.rounds_cut_by_deadline,
        "conversations_started": rec.starts_ok,
        "presses": rec.presses_ok,
        "answers": rec.answers_ok,
        "leads": rec.leads_ok,
        "presses_per_s": round(presses / wall_s, 1),
        "commands_per_s": round((presses + rec.starts_ok) / wall_s, 1),
        "latency_ms": _latency(rec),
        "errors": dict(rec.errors),
        "error_examples": rec.error_examples,
        "anomalies": dict(rec.anomalies),
        "anomaly_examples": rec.anomaly_examples,
    }


async def _measure(
    session: aiohttp.ClientSession,
    server: Server,
    target: Target,
    phase: Phase,
    seconds: float,
    players: Sequence[PlayOne],
    seed: int = 0,
) -> Run:
    """Run one visitor per player to the deadline, with the counters around it."""
    rec, lag, stop_lag = Recorder(), list[int](), asyncio.Event()
    before = Snapshot.take(server.pid)
    started = time.perf_counter_ns()
    ctx = RunContext(session, server.ws_url, phase, seed, started + int(seconds * 1e9), rec)
    lag_task = asyncio.create_task(watch_loop_lag(lag, stop_lag))
    scripts = await asyncio.gather(*(play(ctx, i) for i, play in enumerate(players)))
    wall_s = (time.perf_counter_ns() - started) / 1e9
    stop_lag.set()
    await lag_task
    after = Snapshot.take(server.pid)
    summary = _summary(target, server, rec, wall_s)
    summary["deadline_s"] = round(seconds, 3)
    summary["cpu"] = cpu_usage(before, after, wall_s)
    summary["server_io_mb"] = io_usage(before, after)
    summary["loadgen_loop_lag_ms"] = summarize(lag)
    return Run(summary, list(scripts))


async def run_leadflow(
    session: aiohttp.ClientSession,
    server: Server,
    phase: Phase,
    *,
    visitors: int,
    seed: int,
    py_spy_dir: Path | None = None,
) -> Run:
    """The phase against Leadflow, with the server's own histogram around it."""
    before = await metrics.scrape(session, server.http_url)
    stop_profiler: Stop | None = None
    if py_spy_dir is not None:
        stop_profiler = start_py_spy(server.pid, py_spy_dir, phase.name)
        await asyncio.sleep(PY_SPY_ATTACH_S)

    players = [leadflow_visitor] * visitors
    try:
        run = await _measure(session, server, "leadflow", phase, phase.seconds, players, seed)
    finally:
        if stop_profiler is not None:
            stop_profiler()
    after = await metrics.scrape(session, server.http_url)
    run.summary["server_side"] = metrics.server_side_delta(before, after)
    return run


async def run_echo(
    session: aiohttp.ClientSession, server: Server, phase: Phase, scripts: Sequence[Script]
) -> Run:
    """The echo twin: replay each Leadflow visitor's script against the echo server."""

    def player(script: Script) -> PlayOne:
        async def play(ctx: RunContext, index: int) -> Script:
            return await echo_visitor(ctx, index, script)

        return play

    seconds = phase.seconds * ECHO_DEADLINE_FACTOR + 5.0
    return await _measure(session, server, "echo", phase, seconds, [player(s) for s in scripts])
