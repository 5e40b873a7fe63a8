"""Where a lone command's time goes on the broker: the processor's Kafka I/O, hop by hop.

``python -m bench.kafka.txn_probe [--iterations 300] [--txn-partitions 1|2]``

No Leadflow code: one client produces a "command" and waits for the "reply", one
"processor" (in the same process, its own clients) reads the command
(``read_committed``), writes the "events" in a transaction (plus a "changelog"
record with ``--txn-partitions 2``, as a batch did before checkpoints), commits,
then produces the reply. Each hop is timed (``perf_counter``) and the
``ConcurrentTransactions`` retries of ``AddPartitionsToTxn`` (aiokafka then sleeps
20 ms) are counted. Starts its own broker unless ``KAFKA_BOOTSTRAP_SERVERS`` is set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.producer import sender as aiokafka_sender

from bench.kafka.raw import create_topics

CONCURRENT = {"count": 0}


def _count_concurrent() -> None:
    handler = aiokafka_sender.AddPartitionsToTxnHandler
    original = handler.handle_response

    def handle_response(self: Any, resp: Any) -> Any:
        for _topic, partitions in resp.errors:
            for _partition, code in partitions:
                if code == 51:  # CONCURRENT_TRANSACTIONS
                    CONCURRENT["count"] += 1
        return original(self, resp)

    handler.handle_response = handle_response


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values) * 1000:6.2f}  p99 {p99 * 1000:6.2f}"


async def probe(bootstrap: str, args: argparse.Namespace) -> None:
    prefix = f"probe-{uuid.uuid4().hex[:6]}."
    cmd, ev, cl, rep = (prefix + n for n in ("cmd", "ev", "cl", "rep"))
    await create_topics(bootstrap, [cmd, ev, cl, rep])
    client = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=args.linger_ms
    )
    replies = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        isolation_level="read_committed" if args.replies_in_txn else "read_uncommitted",
    )
    commands = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        isolation_level="read_committed",
    )
    txn = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=prefix + "txn",
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
    )
    reply_producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    for c in (client, replies, commands, txn, reply_producer):
        await c.start()
    for consumer, topic in ((replies, rep), (commands, cmd)):
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
    hops: dict[str, list[float]] = {
        k: [] for k in ("produce", "to_processor", "txn_send_ack", "txn_commit", "reply", "total")
    }

    async def processor() -> None:
        while True:
            got = await commands.getmany(timeout_ms=1000)
            for records in got.values():
                for record in records:
                    t1 = time.perf_counter()
                    sent_at = float(record.value or b"0")
                    if not args.pre_add:
                        await txn.begin_transaction()
                    fut = await txn.send(ev, b"e" * 200, key=b"k", partition=0)
                    if args.txn_partitions == 2:
                        await txn.send(cl, b"s" * 300, key=b"k", partition=0)
                    if args.replies_in_txn:
                        await txn.send(rep, record.value, partition=0)
                    await fut
                    t2 = time.perf_counter()
                    await txn.commit_transaction()
                    t3 = time.perf_counter()
                    if not args.replies_in_txn:
                        await reply_producer.send(rep, record.value, partition=0)
                    if args.pre_add:
                        await pre_add()
                    hops["to_processor"].append(t1 - sent_at)
                    hops["txn_send_ack"].append(t2 - t1)
                    hops["txn_commit"].append(t3 - t2)
                    reply_started[0] = t3

    async def pre_add() -> None:
        await txn.begin_transaction()
        txn._txn_manager.maybe_add_partition_to_txn(TopicPartition(ev, 0))

    def cpu_s(pid: int | None) -> float:
        if pid is None:
            return 0.0
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    reply_started = [0.0]
    if args.pre_add:
        await pre_add()
    task = asyncio.create_task(processor())
    cpu: dict[str, float] = {}
    try:
        for i in range(args.iterations + 20):
            if i == 20:
                cpu = {"broker": cpu_s(args.broker_pid), "self": cpu_s(os.getpid())}
            t0 = time.perf_counter()
            await client.send_and_wait(cmd, repr(t0).encode(), partition=0)
            t_ack = time.perf_counter()
            while True:
                got = await replies.getmany(timeout_ms=5000)
                if got:
                    break
            t4 = time.perf_counter()
            if i >= 20:
                hops["produce"].append(t_ack - t0)
                hops["reply"].append(t4 - reply_started[0])
                hops["total"].append(t4 - t0)
            if args.think_ms:
                await asyncio.sleep(args.think_ms / 1000)
        cpu = {
            "broker": cpu_s(args.broker_pid) - cpu["broker"],
            "self": cpu_s(os.getpid()) - cpu["self"],
        }
    finally:
        task.cancel()
        for c in (client, replies, commands, txn, reply_producer):
            await c.stop()
    print(
        f"txn partitions {args.txn_partitions}, replies in txn {args.replies_in_txn},"
        f" linger {args.linger_ms}, fetch wait {args.fetch_max_wait_ms}, think {args.think_ms} ms"
    )
    for name, values in hops.items():
        print(f"  {name:14s} {_ms(values[-args.iterations :])}")
    print(f"  ConcurrentTransactions retries: {CONCURRENT['count']}")
    per = {k: round(v * 1000 / args.iterations, 3) for k, v in cpu.items()}
    print(f"  CPU ms per command: {per} (self: both clients and the 'processor')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--txn-partitions", type=int, default=1, choices=(1, 2))
    parser.add_argument("--replies-in-txn", action="store_true")
    parser.add_argument("--linger-ms", type=int, default=0)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=500)
    parser.add_argument("--think-ms", type=float, default=0.0)
    parser.add_argument("--broker-pid", type=int, default=None, help="to sample its CPU")
    parser.add_argument("--pre-add", action="store_true", help="AddPartitionsToTxn ahead")
    parser.add_argument("--backoff-ms", type=float, default=None, help="ConcurrentTransactions")
    args = parser.parse_args()
    _count_concurrent()
    if args.backoff_ms is not None:
        aiokafka_sender.BACKOFF_OVERRIDE = args.backoff_ms / 1000
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        asyncio.run(probe(bootstrap, args))
        return
    from tests.support.kafka import LocalKafka

    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka") as kafka:
        asyncio.run(probe(kafka.bootstrap, args))


if __name__ == "__main__":
    main()
