"""The shell of ``python -m bench.mirror``: brokers, the mirror, the producer and the
two timing consumers (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.kafka.sysstats import machine_info
from bench.mirror.core import (
    Json,
    lags_ns,
    record_number,
    record_value,
    report,
    schedule,
    summaries,
)
from bench.procstats import git_state, machine_cpu_seconds, process_cpu_seconds
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from tests.support.kafka import LocalKafka
from tests.support.mirror import MirrorMaker, region_flows

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "bench."
REGION, ANALYTICS = "region-a", "analytics"


@dataclass
class Timings:
    sent: dict[int, int] = field(default_factory=dict)
    acked: dict[int, int] = field(default_factory=dict)
    region: dict[int, int] = field(default_factory=dict)
    analytics: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    expected: int | None = None  # records sent, once known
    done: asyncio.Event = field(default_factory=asyncio.Event)  # all seen on analytics


async def _consumer(bootstrap: str, topic: str, partitions: int) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:  # resolve the positions now, before anything is sent
        await consumer.position(tp)
    return consumer


async def _watch(consumer: AIOKafkaConsumer, seen: dict[int, int], t: Timings) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        now = time.monotonic_ns()
        for records in batches.values():
            for record in records:
                assert record.value is not None
                number = record_number(record.value)
                if number in seen:
                    t.duplicates += seen is t.analytics
                else:
                    seen[number] = now
        if t.expected is not None and len(t.analytics) >= t.expected:
            t.done.set()


async def _measure(args: argparse.Namespace, region: str, analytics: str) -> tuple[Timings, Json]:
    topic = f"{PREFIX}events"
    t = Timings()
    producer = AIOKafkaProducer(bootstrap_servers=region, acks="all", linger_ms=0)
    await producer.start()
    consumers = [
        await _consumer(region, topic, args.partitions),
        await _consumer(analytics, topic, args.partitions),
    ]
    watchers = [
        asyncio.create_task(_watch(consumers[0], t.region, t)),
        asyncio.create_task(_watch(consumers[1], t.analytics, t)),
    ]
    plan = schedule(args.rate, args.warmup + args.seconds)
    warm = round(args.rate * args.warmup)
    number = 0
    pending: list[asyncio.Future[object]] = []
    cpu: Json = {}
    try:
        start = time.monotonic()
        for offset, count in plan:
            if number >= warm and not cpu:
                cpu = _cpu_sample(args.pids)
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for _ in range(count):
                n = number
                number += 1
                t.sent[n] = time.monotonic_ns()
                future = await producer.send(
                    topic, record_value(n, args.record_bytes), key=f"c-{n % 2000}".encode()
                )
                future.add_done_callback(
                    lambda _f, n=n: t.acked.__setitem__(n, time.monotonic_ns())
                )
                pending.append(future)
        await asyncio.gather(*pending)
        cpu = _cpu_delta(cpu, _cpu_sample(args.pids))
        t.expected = number
        with contextlib.suppress(TimeoutError):  # what is missing then is reported
            await asyncio.wait_for(t.done.wait(), args.drain)
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for consumer in consumers:
            await consumer.stop()
        await producer.stop()
    measured = range(warm, number)
    span = (t.sent[number - 1] - t.sent[warm]) / 1e9 if number - 1 > warm else 0.0
    return t, {
        "achieved": (len(measured) - 1) / span if span else 0.0,
        "measured": len(measured),
        "cpu": cpu,
    }


def _cpu_sample(pids: dict[str, int]) -> Json:
    return {
        "at": time.monotonic(),
        "machine": machine_cpu_seconds(),
        **{name: process_cpu_seconds(pid) for name, pid in pids.items()},
    }


def _cpu_delta(before: Json, after: Json) -> Json:
    wall = after["at"] - before["at"]
    out: Json = {}
    for name, value in after.items():
        if name != "at" and value is not None and before.get(name) is not None:
            out[name] = round((value - before[name]) / wall, 3)
    return out


def _start(brokers: dict[str, LocalKafka]) -> None:
    with ThreadPoolExecutor(len(brokers)) as pool:
        for started in [pool.submit(b.start) for b in brokers.values()]:
            started.result()


def _run(args: argparse.Namespace, exactly_once: bool) -> Json:
    """One mode's run on fresh brokers: its lags, losses, duplicates and CPU."""
    mode = "exactly once" if exactly_once else "at least once"
    loadavg_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        workdir = Path(tmp)
        brokers = {name: LocalKafka(workdir / name) for name in (REGION, ANALYTICS)}
        mirror: MirrorMaker | None = None
        try:
            print(f"{mode}: starting two brokers and MirrorMaker 2 ...", flush=True)
            _start(brokers)
            for broker in brokers.values():
                settings = KafkaSettings(
                    bootstrap=broker.bootstrap, prefix=PREFIX, partitions=args.partitions
                )
                asyncio.run(ensure_topics(settings))
            mirror = MirrorMaker(
                {name: b.bootstrap for name, b in brokers.items()},
                region_flows([REGION], ANALYTICS, PREFIX),
                workdir / "mirror",
                exactly_once=exactly_once,
            ).start()
            assert mirror.proc is not None
            args.pids = {
                "mirror": mirror.proc.pid,
                **{f"broker {name}": b.pid() or 0 for name, b in brokers.items()},
                "bench": os.getpid(),
            }
            print(f"sending {args.rate:g}/s for {args.warmup:g} + {args.seconds:g} s", flush=True)
            t, run = asyncio.run(
                _measure(args, brokers[REGION].bootstrap, brokers[ANALYTICS].bootstrap)
            )
        finally:
            if mirror is not None:
                mirror.stop()
            for broker in brokers.values():
                broker.stop()
    warm = round(args.rate * args.warmup)
    keep = {n for n in t.sent if n >= warm}
    acked = {n: v for n, v in t.acked.items() if n in keep}
    return {
        "mode": mode,
        "seconds": args.seconds,
        "drain_seconds": args.drain,
        "partitions": args.partitions,
        "record_bytes": args.record_bytes,
        "rate": {"target": args.rate, "achieved": round(run["achieved"], 1)},
        "records": len(keep),
        "missing": len(keep - set(t.analytics)),
        "duplicates": t.duplicates,
        "lag": summaries(
            {
                "mirror": lags_ns(acked, {n: t.analytics[n] for n in keep if n in t.analytics}),
                "region": lags_ns(acked, {n: t.region[n] for n in keep if n in t.region}),
                "ack": lags_ns({n: t.sent[n] for n in keep}, acked),
            }
        ),
        "cpu": run["cpu"],
        "loadavg_before": loadavg_before,
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mirror", description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0, help="records a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds sent, not counted")
    parser.add_argument("--drain", type=float, default=30.0, help="wait for stragglers")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--record-bytes", type=int, default=400)
    parser.add_argument(
        "--modes",
        default="exactly-once,at-least-once",
        help="the mirror's delivery modes to run, one after the other (the deployments "
        "run exactly once)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mirror.json")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"exactly-once", "at-least-once"}:
        parser.error("--modes: exactly-once and/or at-least-once")
    doc: Json = {
        "benchmark": "bench.mirror",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "git": git_state("bench/mirror", "tests/support/mirror.py"),
        "warmup_seconds": args.warmup,
        "runs": [_run(args, exactly_once=mode == "exactly-once") for mode in modes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(report(doc))
    print(f"wrote {args.out}")
    return 0
