"""How soon an event can be read from Redis: ``python -m bench.projector.freshness``.

A real ``leadflow run projector`` process follows a fresh ``events`` topic on a
real broker into a real Redis. Event batches (one record per command, as the
processor writes them) are produced at a steady pace; for each one the clock
runs from Kafka's acknowledgement to the moment its conversation's view in
Redis holds the batch's last seq. Beside it, in the same run, an independent
aiokafka consumer of the same topic measures the raw acknowledgement ->
delivery time: the floor any consumer of the log pays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.procstats import summarize
from bench.projector.services import Services
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from tests.support.projection import command_records
from tests.support.server import ROOT, free_port
from tests.support.traffic import simulate

RESULTS = ROOT / "bench" / "results"


def _start_projector(
    services: Services, prefix: str, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
        "LEADFLOW_TOPIC_PREFIX": prefix,
        "LEADFLOW_REDIS_URL": services.redis_url,
        "LEADFLOW_REDIS_PREFIX": prefix,
        "LEADFLOW_PROJECTOR_PORT": str(port),
        "LEADFLOW_LOG_LEVEL": "warning",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "projector"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"projector not ready:\n{log.read_text()[-2000:]}")


async def _raw_consumer(
    bootstrap: str, topic: str, acked: dict[bytes, float], out: list[int]
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    sent = acked.get(record.value or b"")
                    if sent is not None:
                        out.append(int((now - sent) * 1e9))
    finally:
        await consumer.stop()


async def measure(
    services: Services, rate: float, seconds: float, conversations: int
) -> dict[str, Any]:
    prefix = services.topic_prefix
    settings = KafkaSettings(bootstrap=services.bootstrap, prefix=prefix)
    await ensure_topics(settings)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="freshness-"))
    projector = _start_projector(services, prefix, port, workdir / "projector.log")
    traffic = await simulate(conversations, seed=41, prefix="f")
    records = command_records(traffic.events)
    last_seq = {value: orjson.loads(value)["events"][-1]["seq"] for _, value in records}
    producer = AIOKafkaProducer(bootstrap_servers=services.bootstrap, acks="all", linger_ms=1)
    redis = services.client()
    acked: dict[bytes, float] = {}
    raw: list[int] = []
    fresh: list[int] = []
    waiting: dict[tuple[str, int], float] = {}
    await producer.start()
    raw_task = asyncio.create_task(
        _raw_consumer(services.bootstrap, settings.events_topic, acked, raw)
    )
    await asyncio.sleep(2.0)  # the raw consumer is positioned at the end
    current = await redis.get(f"{prefix}rm:current")
    namespace = current.decode() if isinstance(current, bytes) else str(current)

    async def poll() -> None:
        while True:
            pending = list(waiting.items())
            if pending:
                pipe = redis.pipeline(transaction=False)
                for (cid, _), _ in pending:
                    pipe.hget(f"{prefix}rm:{namespace}:conv:{cid}", "last_seq")
                held = await pipe.execute()
                now = time.perf_counter()
                for ((cid, seq), sent), value in zip(pending, held, strict=True):
                    if value is not None and int(value) >= seq:
                        fresh.append(int((now - sent) * 1e9))
                        del waiting[(cid, seq)]
            await asyncio.sleep(0.002)

    poller = asyncio.create_task(poll())
    interval = 1.0 / rate
    started = time.perf_counter()
    sent = 0
    try:
        for cid, value in records:
            if time.perf_counter() - started > seconds:
                break
            target = started + sent * interval
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            await producer.send_and_wait(settings.events_topic, key=cid.encode(), value=value)
            now = time.perf_counter()
            acked[value] = now
            waiting[(cid, last_seq[value])] = now
            sent += 1
        for _ in range(600):  # up to 30 s for the last ones
            if not waiting:
                break
            await asyncio.sleep(0.05)
    finally:
        poller.cancel()
        raw_task.cancel()
        await producer.stop()
        await redis.aclose()
        projector.terminate()
        projector.wait(timeout=20)
    elapsed = time.perf_counter() - started
    return {
        "records_sent": sent,
        "records_per_second": round(sent / elapsed, 1),
        "events_per_second": round(
            sum(len(orjson.loads(v)["events"]) for _, v in records[:sent]) / elapsed, 1
        ),
        "never_visible": len(waiting),
        "ack_to_redis": summarize(fresh),
        "ack_to_raw_consumer": summarize(raw),
    }


def _table(result: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any]) -> str:
        cells = [f"{s['count']:,}", *(str(s[f"{q}_ms"]) for q in ("p50", "p95", "p99", "max"))]
        return f"| {name} | " + " | ".join(cells) + " |"

    return "\n".join(
        [
            f"# `python -m bench.projector.freshness` ({result['at']})",
            "",
            f"{result['records_per_second']} records/s ({result['events_per_second']} events/s)"
            f" for {result['seconds']} s; records never visible: {result['never_visible']}",
            "",
            "| from Kafka's ack to | n | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|--:|--:|--:|--:|--:|",
            row("the view in Redis (projector)", result["ack_to_redis"]),
            row("a raw aiokafka consumer (baseline)", result["ack_to_raw_consumer"]),
            "",
            f"Target: readable within 1 s: **{'PASS' if result['pass'] else 'FAIL'}** (p99).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=300.0, help="records (commands) per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--conversations", type=int, default=2000)
    args = parser.parse_args(argv)
    services = Services(Path(tempfile.mkdtemp(prefix="bench-freshness-")))
    try:
        services.start_redis()
        services.start_kafka()
        result = asyncio.run(measure(services, args.rate, args.seconds, args.conversations))
    finally:
        asyncio.run(services.cleanup_external())
        services.stop()
    result.update(
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds=args.seconds,
        rate=args.rate,
    )
    result["pass"] = result["never_visible"] == 0 and result["ack_to_redis"]["p99_ms"] <= 1000
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "projector_freshness.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2)
    )
    table = _table(result)
    (RESULTS / "projector_freshness.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
