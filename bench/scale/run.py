"""The run's phases as the coordinator drives them (bench/README.md, "Phases"): spawn
the load generators, ramp the sockets open, an idle window, the active window with
probes, the kill of the victim gateway and its failover, then collect every load
generator's answers.

``drive`` returns the raw measurements: the load generators' answers plus, on the
machine's monotonic clock, when each phase began (``ramp_began``, ``idle_began``,
``active_began``, ``active_ended``, ``killed_at``, ``failover_ended``,
``stopped_at``), and the CPU windows, RSS and sockets held per process at each step;
``bench.scale.summary`` folds them into the report. Why it goes on after a ramp that
timed out: what is open is still worth measuring, and the report says how many. Why
the load generators are killed here on any failure: their sockets would otherwise
outlive the run; the stack is the caller's to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from bench.scale.fleet import LoadGens, loadgen_configs
from bench.scale.measure import CpuWindow, loadavg, open_connections, rss_all
from bench.scale.plan import Plan
from bench.scale.stack import Stack

Json = dict[str, Any]


async def held_per_gateway(stack: Stack) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for s in stack.gateway_services:
        port = int(s.env["LEADFLOW_METRICS_PORT"])
        out[s.name] = await asyncio.to_thread(open_connections, port)
    return out


async def progress(stack: Stack, began: float, total: int) -> None:
    """Every 10 s: the sockets the gateways hold (their /metrics)."""
    while True:
        await asyncio.sleep(10.0)
        try:
            held = await held_per_gateway(stack)
        except Exception as exc:  # a progress line is not worth failing the run
            print(f"  (no progress: {exc!r})", flush=True)
            continue
        count = sum(v or 0 for v in held.values())
        print(f"  {time.monotonic() - began:6.0f} s: {count}/{total} sockets held, "
              f"load {loadavg()}", flush=True)  # fmt: skip


async def drive(
    args: argparse.Namespace, stack: Stack, layout: Plan, gens: LoadGens, workdir: Path
) -> Json:
    """The run's phases; the load generators are killed and reaped on any failure."""
    try:
        return await _phases(args, stack, layout, gens, workdir)
    except BaseException:
        gens.kill()
        for proc in gens.procs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10.0)
        raise


async def _phases(
    args: argparse.Namespace, stack: Stack, layout: Plan, gens: LoadGens, workdir: Path
) -> Json:
    out: Json = {}
    urls = [s.ws_url for s in stack.gateway_services]
    await gens.spawn(loadgen_configs(args, layout, urls), workdir)
    await asyncio.sleep(1.0)
    pids = {**stack.pids(), **gens.pids}
    out["rss_before_kib"] = rss_all(pids)

    print(f"opening {layout.total} sockets ...", flush=True)
    began = out["ramp_began"] = time.monotonic()
    cpu = CpuWindow(pids)
    ticker = asyncio.create_task(progress(stack, began, layout.total))
    try:
        opened = await gens.ask("open", args.ramp_timeout or 300 + 0.02 * layout.total)
    except TimeoutError:  # measure what is open; the report says how many
        print("the ramp timed out: going on with the sockets open now", flush=True)
        opened = await gens.ask("status", 120)
        out["ramp_timed_out"] = True
    finally:
        ticker.cancel()
    out["ramp_cpu"] = cpu.end()
    print(
        f"opened {sum(a['opened'] for a in opened)} in {time.monotonic() - began:.1f} s", flush=True
    )
    await asyncio.sleep(5.0)
    out["held_after_ramp"] = await held_per_gateway(stack)
    out["rss_held_kib"] = rss_all(pids)

    print(f"idle window {args.idle_seconds:.0f} s ...", flush=True)
    out["idle_began"] = time.monotonic()
    cpu = CpuWindow(pids)
    await asyncio.sleep(args.idle_seconds)
    out["idle_cpu"] = cpu.end()

    print(
        f"{args.active} visitors play for {args.active_seconds:.0f} s, with probes ...", flush=True
    )
    await gens.ask("play", 30)
    out["active_began"] = time.monotonic()
    cpu = CpuWindow(pids)
    await asyncio.sleep(args.active_seconds)
    await gens.ask("probes_off", 30)
    out["active_ended"] = time.monotonic()
    out["active_cpu"] = cpu.end()
    out["rss_active_kib"] = rss_all(pids)

    if not args.no_kill:
        victim = stack.gateway_services[layout.victim]
        held = out["held_after_ramp"].get(victim.name)
        before = await held_per_gateway(stack)
        expected = before.get(victim.name) or held
        print(f"kill -9 {victim.name} (holding {expected}) ...", flush=True)
        cpu = CpuWindow({k: v for k, v in pids.items() if k != victim.name})
        out["killed_at"] = time.monotonic()
        victim.kill9()
        out["expected_lost"] = expected
        deadline = out["killed_at"] + args.failover_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            status = await gens.ask("status", 60)
            lost = sum(s["lost"] for s in status)
            recovering = sum(s["recovering"] for s in status)
            print(f"  {time.monotonic() - out['killed_at']:5.1f} s: {lost} resumed or gave up, "
                  f"{recovering} reconnecting", flush=True)  # fmt: skip
            if recovering == 0 and lost >= (expected or 0):
                break
        out["failover_cpu"] = cpu.end()
        out["failover_ended"] = time.monotonic()
        await asyncio.sleep(args.after_seconds)
        out["held_after_kill"] = await held_per_gateway(stack)
        out["rss_after_kill_kib"] = rss_all({k: v for k, v in pids.items() if k != victim.name})
    out["stopped_at"] = time.monotonic()
    print("collecting results ...", flush=True)
    out["answers"] = await gens.ask("result", 300)
    with contextlib.suppress(Exception):
        await gens.close()
    out["opened_answers"] = opened
    return out
