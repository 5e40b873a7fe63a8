"""``python -m bench.mirror.crash``: what a mirror killed mid-stream copies twice.

For each delivery mode, on fresh brokers (a region and the analytics cluster) and a fresh
MirrorMaker 2 of the regions topology: a producer appends ``--records`` numbered records
to the region's ``events`` topic at ``--rate``; after ``--kill-after`` seconds the mirror
is killed with SIGKILL, the rest is sent while it is down, then it is started again and
the analytics side is read until every record is there (or ``--drain`` passes). Prints,
per mode, how many records arrived, how many were missing and how many came twice;
exactly once (the deployments') must show none twice. Writes
``bench/results/mirror_crash.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.mirror.core import Json, record_number, record_value
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from tests.support.distributed import topic_records
from tests.support.kafka import LocalKafka
from tests.support.mirror import MirrorMaker, region_flows

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "crash."
REGION, ANALYTICS = "region-a", "analytics"


async def _produce(
    bootstrap: str, count: int, rate: float, kill_at: int, kill: Callable[[], None]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        start = time.monotonic()
        for n in range(count):
            if n == kill_at:
                await asyncio.to_thread(kill)
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(f"{PREFIX}events", record_value(n, 200), key=str(n % 97).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _copies(bootstrap: str, partitions: int) -> Counter[int]:
    records = await topic_records(bootstrap, f"{PREFIX}events", partitions)
    return Counter(record_number(r.value) for r in records if r.value is not None)


def _run(args: argparse.Namespace, exactly_once: bool) -> Json:
    mode = "exactly once" if exactly_once else "at least once"
    with tempfile.TemporaryDirectory(prefix="bench-mirror-crash-") as tmp:
        workdir = Path(tmp)
        brokers = {name: LocalKafka(workdir / name) for name in (REGION, ANALYTICS)}
        mirror: MirrorMaker | None = None
        try:
            print(f"{mode}: starting two brokers and MirrorMaker 2 ...", flush=True)
            with ThreadPoolExecutor(2) as pool:
                for started in [pool.submit(b.start) for b in brokers.values()]:
                    started.result()
            for broker in brokers.values():
                settings = KafkaSettings(bootstrap=broker.bootstrap, prefix=PREFIX, partitions=4)
                asyncio.run(ensure_topics(settings))
            mirror = MirrorMaker(
                {name: b.bootstrap for name, b in brokers.items()},
                region_flows([REGION], ANALYTICS, PREFIX),
                workdir / "mirror",
                exactly_once=exactly_once,
            ).start()
            kill_at = round(args.rate * args.kill_after)
            asyncio.run(
                _produce(brokers[REGION].bootstrap, args.records, args.rate, kill_at, mirror.kill9)
            )
            mirror.start()
            deadline = time.monotonic() + args.drain
            while True:
                copies = asyncio.run(_copies(brokers[ANALYTICS].bootstrap, 4))
                if len(copies) >= args.records or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            if mirror is not None:
                mirror.stop()
            for broker in brokers.values():
                broker.stop()
    return {
        "mode": mode,
        "records": args.records,
        "rate": args.rate,
        "killed_after_records": kill_at,
        "arrived": len(copies),
        "missing": args.records - len(set(copies) & set(range(args.records))),
        "copied_twice": sum(c - 1 for c in copies.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mirror.crash", description=__doc__)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--kill-after", type=float, default=3.0, help="seconds")
    parser.add_argument("--drain", type=float, default=60.0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "mirror_crash.json"
    )
    args = parser.parse_args(argv)
    loadavg = [round(v, 2) for v in os.getloadavg()]
    runs = [_run(args, exactly_once) for exactly_once in (True, False)]
    doc: Json = {
        "benchmark": "bench.mirror.crash",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_before": loadavg,
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "runs": runs,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for run in runs:
        print(
            f"{run['mode']}: {run['records']} records at {run['rate']:g}/s, mirror killed "
            f"after {run['killed_after_records']}: {run['missing']} missing, "
            f"{run['copied_twice']} copied twice"
        )
    print(f"load average before {doc['loadavg_before']}, after {doc['loadavg_after']}")
    exactly = runs[0]
    return 0 if exactly["missing"] == 0 and exactly["copied_twice"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
