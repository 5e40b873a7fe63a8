"""The processor's transactional writer alone, on a broker: what a batch costs.

``python -m bench.kafka.writer_probe [--partitions 4] [--seconds 10] [--think-ms 0]``

One :class:`~services.distributed.kafka_writer.KafkaPartitionWriter` per partition
commits batches of ``--batch`` 200-byte events records back to back (``--think-ms``
between them: 0 is a partition under load, whose next batch is always ready). It
reports the commit time (p50/p99), batches/s, the Kafka requests per batch by kind
(counted on the client), the ``AddPartitionsToTxn`` refused with
CONCURRENT_TRANSACTIONS, and the broker's CPU per batch (``--broker-pid``). No
Leadflow decision, no consumer: the writer's own cost. ``--writer-module`` loads
another implementation of the class (to compare one with the current one).
Starts its own broker unless ``KAFKA_BOOTSTRAP_SERVERS`` is set.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.producer import sender as aiokafka_sender

from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.processor.batch import Out

REQUESTS: collections.Counter[str] = collections.Counter()


def _count_requests() -> None:
    send = AIOKafkaClient.send

    async def counted(self: Any, node_id: Any, request: Any, **kwargs: Any) -> Any:
        REQUESTS[type(request).__name__.split("_")[0]] += 1
        return await send(self, node_id, request, **kwargs)

    AIOKafkaClient.send = counted
    handler = aiokafka_sender.AddPartitionsToTxnHandler
    original = handler.handle_response

    def handle_response(self: Any, resp: Any) -> Any:
        for _topic, partitions in resp.errors:
            for _partition, code in partitions:
                if code == 51:  # CONCURRENT_TRANSACTIONS
                    REQUESTS["(refused: CONCURRENT_TRANSACTIONS)"] += 1
        return original(self, resp)

    handler.handle_response = handle_response


def _writer_class(path: str | None) -> Any:
    if path is None:
        from services.distributed.kafka_writer import KafkaPartitionWriter

        return KafkaPartitionWriter
    spec = importlib.util.spec_from_file_location("writer_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KafkaPartitionWriter


def _cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def probe(bootstrap: str, args: argparse.Namespace) -> None:
    settings = KafkaSettings(
        bootstrap=bootstrap, prefix=f"wp-{uuid.uuid4().hex[:6]}.", partitions=args.partitions
    )
    await ensure_topics(settings)
    cls = _writer_class(args.writer_module)
    writers = [cls(settings, p) for p in range(args.partitions)]
    for writer in writers:
        await writer.start()
    records = [Out("events", b"k%d" % i, b"e" * 200) for i in range(args.batch)]
    times: list[float] = []

    async def loop(writer: Any, until: float, keep: bool) -> None:
        while time.monotonic() < until:
            started = time.perf_counter()
            await writer.commit(records)
            if keep:
                times.append(time.perf_counter() - started)
            if args.think_ms:
                await asyncio.sleep(args.think_ms / 1000)

    try:
        await asyncio.gather(*(loop(w, time.monotonic() + 2.0, False) for w in writers))
        REQUESTS.clear()
        cpu = {"broker": _cpu_s(args.broker_pid), "self": _cpu_s(os.getpid())}
        started = time.monotonic()
        await asyncio.gather(*(loop(w, started + args.seconds, True) for w in writers))
        wall = time.monotonic() - started
        cpu = {
            "broker": _cpu_s(args.broker_pid) - cpu["broker"],
            "self": _cpu_s(os.getpid()) - cpu["self"],
        }
    finally:
        for writer in writers:
            await writer.stop()
    n = len(times)
    times.sort()
    print(
        f"writer {args.writer_module or 'current'}: {args.partitions} partitions, batch"
        f" {args.batch}, think {args.think_ms} ms, load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"  {n} batches, {n / wall:,.0f}/s; commit p50 {statistics.median(times) * 1000:.2f} ms,"
        f" p99 {times[min(n - 1, int(n * 0.99))] * 1000:.2f} ms"
    )
    for kind, count in sorted(REQUESTS.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:40s} {count / n:6.2f} per batch")
    print(
        "  CPU ms per batch: "
        + ", ".join(f"{k} {v * 1000 / n:.3f}" for k, v in cpu.items() if v or k == "self")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1, help="events records per batch")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--think-ms", type=float, default=0.0)
    parser.add_argument("--broker-pid", type=int, default=None, help="to sample its CPU")
    parser.add_argument("--writer-module", default=None, help="a file with KafkaPartitionWriter")
    args = parser.parse_args()
    _count_requests()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        asyncio.run(probe(bootstrap, args))
        return
    from tests.support.kafka import LocalKafka

    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka") as kafka:
        asyncio.run(probe(kafka.bootstrap, args))


if __name__ == "__main__":
    main()
