"""``python -m bench.registry``: publish -> first new-version conversation on every
gateway and processor (the issue 18 benchmark). See bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import orjson

from bench.kafka.sysstats import machine_info, versions
from bench.procstats import git_state
from bench.registry.core import GREETING_LINE, Json, marker, partition_of, verdict, with_greeting
from bench.registry.report import markdown
from bench.registry.runs import Tally, Target, baseline, publishes, summary
from bench.registry.stacks import Config, Distributed, start_embedded
from bench.scale.measure import CpuWindow, loadavg
from services.catalog import EXAMPLE_FLOWS_DIR
from tests.support.distributed import read_topic

RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.registry", description=__doc__)
    p.add_argument("--publishes", type=int, default=50, help="distributed arm")
    p.add_argument("--embedded-publishes", type=int, default=50)
    p.add_argument("--partitions", type=int, default=2, help="of the commands topic")
    p.add_argument(
        "--per-gateway", type=int, default=2, help="visitors starting at once on each gateway"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="a publish not covered by then")
    p.add_argument("--gap", type=float, default=0.3, help="seconds between publishes")
    p.add_argument("--baseline-starts", type=int, default=30, help="per gateway")
    p.add_argument("--target", type=float, default=1.0, help="p99 seconds, all covered")
    p.add_argument("--skip-distributed", action="store_true")
    p.add_argument("--skip-embedded", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS / "registry.json")
    p.add_argument("--md", type=Path, default=RESULTS / "registry.md")
    return p.parse_args(argv)


def documents(run: str, count: int) -> tuple[list[str], list[str]]:
    base = (EXAMPLE_FLOWS_DIR / "solar-quote.yaml").read_text()
    marks = [marker(run, i) for i in range(count)]
    return marks, [with_greeting(base, m) for m in marks]


async def measure(
    target: Target, args: argparse.Namespace, count: int, pids: dict[str, int]
) -> Json:
    run = uuid.uuid4().hex[:6]
    marks, docs = documents(run, count)
    tally = Tally()
    print("warming up and measuring the baseline (starts without a publish) ...", flush=True)
    await baseline(target, 3, tally)  # first conversations per partition: not measured
    base = await baseline(target, args.baseline_starts, tally)
    print(f"publishing {count} versions ...", flush=True)
    window = CpuWindow({**pids, "bench": os.getpid()})
    rows = await publishes(
        target,
        lambda i: docs[i],
        marks,
        GREETING_LINE.split()[0],
        args.per_gateway,
        args.timeout,
        args.gap,
        tally,
    )
    cpu = window.end()
    keys = [f"gateway:{g}" for g in target.gateways] + [f"processor:{p}" for p in target.processors]
    return {
        "baseline_start": base,
        "summary": summary(rows, keys),
        "verdict": verdict([r["all_covered_after_answer_s"] for r in rows], args.target),
        "verdict_from_sent": verdict([r["all_covered_after_sent_s"] for r in rows], args.target),
        "cpu": cpu,
        "errors": tally.errors,
        "publishes": rows,
    }


def distributed_arm(args: argparse.Namespace, config: Config) -> Json:
    arm = Distributed.start(config, args.partitions)
    try:
        owned = arm.settled_owners()
        by_processor = {
            p: sorted(q for q, o in owned.items() if o == p) for p in set(owned.values())
        }
        print(f"partitions by processor: {by_processor}", flush=True)
        target = Target(
            gateways=arm.gateways(),
            processors=sorted(by_processor),
            processor_of=lambda cid: owned[partition_of(cid, args.partitions)],
            api=arm.api,
            admin_key=config.admin_key,
        )
        out = asyncio.run(measure(target, args, args.publishes, arm.pids()))
        history = arm.assignments()
        out["partitions"] = args.partitions
        out["partitions_by_processor"] = by_processor
        out["assignment_history"] = history
        # attribution assumed the owners found before the run; a later rebalance breaks it
        out["rebalanced_during_run"] = any(
            sorted(a[-1]) != by_processor.get(name, []) for name, a in history.items() if a
        )
        out["attribution_check"] = asyncio.run(check_attribution(arm, args.partitions))
        out["service_problems"] = arm.stack.problems()
        out["notes"] = arm.stack.notes
        return out
    finally:
        arm.stop()


async def check_attribution(arm: Distributed, partitions: int) -> Json:
    """Every command the run produced, read back from the commands topic: the
    partition Kafka put it in must be the one :func:`partition_of` computed."""
    assert arm.stack.cluster is not None
    topic = arm.stack.cluster.settings.commands_topic
    records = await read_topic(arm.stack.bootstrap, topic, partitions)
    wrong = sum(1 for p, key, _ in records if partition_of(key.decode(), partitions) != p)
    return {"records": len(records), "mismatched": wrong}


def embedded_arm(args: argparse.Namespace, config: Config) -> Json:
    server = start_embedded(config)
    try:
        target = Target(
            gateways={"serve": server.ws_url},
            processors=["serve"],
            processor_of=lambda _cid: "serve",
            api=f"{server.http_url}/api/v1",
            admin_key=config.admin_key,
        )
        pids = {} if server.proc is None else {"serve": server.proc.pid}
        return asyncio.run(measure(target, args, args.embedded_publishes, pids))
    finally:
        server.stop()


def on_term(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_term)
    doc: Json = {
        "benchmark": "registry",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state("bench/registry", "services/registry", "app", "gateway", "projector"),
        "machine": machine_info(),
        "versions": versions(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
            config = Config(Path(tmp))
            if not args.skip_embedded:
                print("embedded arm: leadflow serve ...", flush=True)
                doc["embedded"] = embedded_arm(args, config)
            if not args.skip_distributed:
                print("distributed arm: 2 gateways, 2 processors, a projector ...", flush=True)
                doc["distributed"] = distributed_arm(args, config)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", flush=True)
        return 130
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    doc["seconds"] = round(time.monotonic() - began, 1)
    doc["loadavg_at_end"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    table = markdown(doc)
    args.md.write_text(table)
    print(table)
    print(f"wrote {args.out} and {args.md}")
    ok = all(doc[a]["verdict"]["pass"] for a in ("embedded", "distributed") if a in doc)
    return 0 if ok else 1
