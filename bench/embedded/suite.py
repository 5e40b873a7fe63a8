"""The whole benchmark: start both servers, run every phase twice, judge, check the log.

Both servers stay up for the whole suite, and one Leadflow data directory
accumulates all phases (the ``human`` phase runs first, on a fresh log). Each
phase runs against Leadflow, then its echo twin replays what was played.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.embedded import integrity
from bench.embedded.phases import Phase
from bench.embedded.protocol import ECHO_PAYLOAD_BYTES, FLOWS
from bench.embedded.runner import run_echo, run_leadflow
from bench.embedded.servers import SERVER_ENV, EchoServer, LeadflowServer
from bench.embedded.stats import Json, machine_info, ratio
from bench.embedded.targets import evaluate_capacity_targets

SETTLE_S = 1.0
TARGET_PRESS_P99_MS = 5.0
TARGET_CONNECT_P95_MS = 20.0
TARGETS = (
    ("press-to-reply p99 <= 5 ms", "press_to_reply", "p99_ms", TARGET_PRESS_P99_MS),
    (
        "connect-to-first-message p95 <= 20 ms",
        "connect_to_first_message",
        "p95_ms",
        TARGET_CONNECT_P95_MS,
    ),
)
COUNTED = ("conversations_started", "presses", "answers", "leads", "rounds_completed")


@dataclass(frozen=True, slots=True)
class Settings:
    visitors: int
    seed: int
    phases: list[Phase]
    sweep: list[Phase]
    tmp_root: Path | None = None
    py_spy_dir: Path | None = None


def _ratios(ours: Json, base: Json) -> Json:
    out: Json = {}
    for series in ("press_to_reply", "connect_to_first_message"):
        for key in ("p50", "p99"):
            a, b = ours.get(series, {}), base.get(series, {})
            out[f"{series}_{key}"] = ratio(a, b, f"{key}_ms")
    return out


async def run_phase(
    session: aiohttp.ClientSession,
    leadflow: LeadflowServer,
    echo: EchoServer,
    phase: Phase,
    settings: Settings,
) -> Json:
    """The phase against Leadflow, then its echo twin, a settle pause after each."""
    print(f"[{phase.name}] leadflow ({phase.describe()}) ...", file=sys.stderr, flush=True)
    ours = await run_leadflow(
        session,
        leadflow,
        phase,
        visitors=settings.visitors,
        seed=settings.seed,
        py_spy_dir=settings.py_spy_dir,
    )
    await asyncio.sleep(SETTLE_S)
    print(f"[{phase.name}] echo ...", file=sys.stderr, flush=True)
    base = await run_echo(session, echo, phase, ours.scripts)
    await asyncio.sleep(SETTLE_S)
    nominal = phase.nominal_rate(settings.visitors)
    return {
        "pacing": phase.describe(),
        "think_ms": [phase.think_min_ms, phase.think_max_ms],
        "seconds": phase.seconds,
        "judged": phase.judged,
        "nominal_presses_per_s": None if nominal is None else round(nominal),
        "leadflow": ours.summary,
        "echo": base.summary,
        "ratios_to_echo": _ratios(ours.summary["latency_ms"], base.summary["latency_ms"]),
    }


def evaluate_targets(phases: dict[str, Json]) -> list[Json]:
    """The latency targets, on the judged phase (``human``); ``pass`` None if not run."""
    judged = next((p for p in phases.values() if p["judged"]), None)
    latency = {} if judged is None else judged["leadflow"]["latency_ms"]
    out = []
    for name, series, key, limit in TARGETS:
        measured = latency.get(series, {}).get(key)
        out.append(
            {
                "name": name,
                "series": series,
                "statistic": key,
                "limit_ms": limit,
                "measured_ms": measured,
                "pass": None if measured is None else measured <= limit,
            }
        )
    return out


def sweep_capacity(steps: list[Json]) -> Json:
    """The highest offered rate up to which press-to-reply p99 stays within the target."""
    last_ok: Json | None = None
    first_failed: Json | None = None
    for step in steps:
        p99 = step["leadflow"]["latency_ms"]["press_to_reply"].get("p99_ms")
        step["within_target"] = p99 is not None and p99 <= TARGET_PRESS_P99_MS
        if first_failed is None and step["within_target"]:
            last_ok = step
        elif first_failed is None:
            first_failed = step
    return {
        "target": f"press-to-reply p99 <= {TARGET_PRESS_P99_MS:g} ms",
        "capacity_step": None if last_ok is None else last_ok["name"],
        "capacity_offered_presses_per_s": None if last_ok is None else last_ok["offered"],
        "capacity_nominal_presses_per_s": (
            None if last_ok is None else last_ok["nominal_presses_per_s"]
        ),
        "first_failing_step": None if first_failed is None else first_failed["name"],
        "all_steps_within_target": first_failed is None,
    }


def _config(settings: Settings) -> Json:
    return {
        "visitors": settings.visitors,
        "seed": settings.seed,
        "phases": {p.name: p.describe() for p in settings.phases},
        "sweep": {p.name: p.describe() for p in settings.sweep},
        "flows": list(FLOWS),
        "socket_per": "conversation (each conversation opens a new WebSocket)",
        "tmp_root": str(settings.tmp_root or tempfile.gettempdir()),
        "echo_payload_bytes": ECHO_PAYLOAD_BYTES,
        "server_env": SERVER_ENV,
        "inherited_leadflow_env": {
            k: v for k, v in os.environ.items() if k.startswith("LEADFLOW_")
        },
    }


async def _drive(
    leadflow: LeadflowServer, echo: EchoServer, settings: Settings
) -> tuple[dict[str, Json], list[Json]]:
    phases: dict[str, Json] = {}
    steps: list[Json] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for phase in settings.phases:
            phases[phase.name] = await run_phase(session, leadflow, echo, phase, settings)
        for phase in settings.sweep:
            step = {"name": phase.name, **await run_phase(session, leadflow, echo, phase, settings)}
            step["offered"] = step["echo"]["presses_per_s"]  # the echo server keeps up
            steps.append(step)
    return phases, steps


async def run_suite(settings: Settings) -> Json:
    started_at = datetime.now(UTC)
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-", dir=settings.tmp_root) as tmp:
        data_dir = Path(tmp) / "data"
        leadflow, echo = LeadflowServer(data_dir, {}), EchoServer(Path(tmp) / "echo.log")
        try:
            await asyncio.to_thread(leadflow.start)
            await asyncio.to_thread(echo.start)
            phases, steps = await _drive(leadflow, echo, settings)
        finally:
            servers = {"leadflow": leadflow.stop(), "echo": echo.stop()}
        contents = integrity.log_contents(data_dir)
    runs = [*phases.values(), *steps]
    counted = {key: sum(run["leadflow"][key] for run in runs) for key in COUNTED}
    result: Json = {
        "benchmark": "embedded",
        "timestamp": started_at.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started_at).total_seconds(), 1),
        "machine": machine,
        "config": _config(settings),
        "phases": phases,
        "targets": evaluate_targets(phases),
        "capacity_targets": evaluate_capacity_targets(phases),
        "servers": servers,
        "integrity": {
            "bench_counted": counted,
            "server_log": contents,
            "mismatches": integrity.mismatches(counted, contents),
        },
    }
    if steps:
        result["sweep"] = {"steps": steps, **sweep_capacity(steps)}
    return result
