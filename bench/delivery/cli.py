"""``python -m bench.delivery``: options, the run, the JSON and the printed table."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from bench.delivery.embedded_runs import run_latency, run_outage
from bench.delivery.kafka_runs import run_latency_kafka
from bench.delivery.report import render
from bench.delivery.throughput import parse_scenarios, run_throughput
from bench.embedded.stats import machine_info
from bench.procstats import Json, git_state

PHASES = ("latency", "throughput", "outage", "latency-kafka")
OUT = Path(__file__).resolve().parents[1] / "results" / "delivery.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.delivery",
        description="Lead delivery: capture-to-delivered latency (embedded), one worker's "
        "deliveries/s against a plain aiohttp baseline, and an outage compressed in time.",
    )
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated: %(default)s")
    p.add_argument("--out", type=Path, default=OUT, help="JSON results (default %(default)s)")
    p.add_argument("--tmp-root", default=None, help="where data directories go (e.g. /dev/shm)")
    a = p.add_argument_group("latency (a)")
    a.add_argument("--leads", type=int, default=300, help="leads left (default %(default)s)")
    a.add_argument("--rate", type=float, default=20.0, help="leads/s (default %(default)s)")
    b = p.add_argument_group("throughput (b)")
    b.add_argument("--deliveries", type=int, default=5000, help="per scenario (%(default)s)")
    b.add_argument(
        "--scenarios",
        default="1x4,1x64,16x4",
        help="destinations x concurrency each, comma-separated (default %(default)s; "
        "4 is the default concurrency of a destination, 64 the most allowed)",
    )
    c = p.add_argument_group("outage (c)")
    c.add_argument("--outage-rate", type=float, default=10.0, help="leads/s per site (%(default)s)")
    c.add_argument("--warmup-seconds", type=float, default=5.0, help="before the outage")
    c.add_argument("--outage-seconds", type=float, default=20.0, help="receiver down (%(default)s)")
    c.add_argument(
        "--real-outage-seconds",
        type=float,
        default=600.0,
        help="the outage it stands for; retry steps and circuit rest are scaled by "
        "outage/real (default %(default)s: 10 minutes)",
    )
    c.add_argument("--after-seconds", type=float, default=10.0, help="leads go on after it")
    c.add_argument("--drain-timeout", type=float, default=240.0, help="wait for the backlog")
    return p


async def _run(args: argparse.Namespace, phases: Sequence[str]) -> Json:
    out: Json = {}
    if "latency" in phases:
        print(f"latency: {args.leads} leads at {args.rate:g}/s ...", flush=True)
        out["latency"] = await run_latency(args.leads, args.rate, args.tmp_root)
    if "latency-kafka" in phases:
        print(f"latency-kafka: {args.leads} leads at {args.rate:g}/s ...", flush=True)
        out["latency_kafka"] = await run_latency_kafka(args.leads, args.rate, args.tmp_root)
    if "throughput" in phases:
        print(f"throughput: {args.deliveries} deliveries per scenario ...", flush=True)
        scenarios = parse_scenarios(args.scenarios)
        out["throughput"] = await run_throughput(scenarios, args.deliveries, args.tmp_root)
    if "outage" in phases:
        print(f"outage: {args.outage_seconds:g} s down standing for {args.real_outage_seconds:g} s")
        out["outage"] = await run_outage(
            args.outage_rate,
            args.warmup_seconds,
            args.outage_seconds,
            args.real_outage_seconds,
            args.after_seconds,
            args.drain_timeout,
            args.tmp_root,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        _parser().error(f"unknown phases: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    result: Json = {
        "benchmark": "delivery",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_state("services/delivery", "app", "bench/delivery"),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
    }
    result["phases"] = asyncio.run(_run(args, phases))
    result["duration_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(render(result))
    print(f"\nwrote {args.out}")
    return 0 if _clean(result["phases"]) else 1


def _clean(phases: Json) -> bool:
    """Every lead delivered, no bad signature, no visitor error."""
    for name in ("latency", "outage", "latency_kafka"):
        run = phases.get(name)
        if run is not None and (
            not run["all_delivered"] or run["bad_signatures"] or run["lead_errors"]
        ):
            return False
    for scenario in phases.get("throughput", {}).get("scenarios", {}).values():
        worker = scenario["worker"]
        if worker["delivered"] != worker["deliveries"] or worker["receiver_bad_signatures"]:
            return False
    return True
