"""``python -m bench.kafka.relay BOOTSTRAP IN EVENTS OUT``: the processor's Kafka I/O with
no logic. For each record of ``IN`` (partition 0): produce it to ``EVENTS``, wait for
the broker's acknowledgement (the processor's output gate), then produce it to ``OUT``
without waiting (as the processor sends replies). Records are handled concurrently."""

from __future__ import annotations

import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def relay(bootstrap: str, source: str, events: str, out: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await producer.start()
    await consumer.start()
    tp = TopicPartition(source, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task[None]] = set()

    async def one(value: bytes) -> None:
        await (await producer.send(events, value=value, partition=0))
        await producer.send(out, value=value, partition=0)

    print("relay ready", flush=True)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for records in batches.values():
                for record in records:
                    task = asyncio.create_task(one(record.value or b""))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(relay(*sys.argv[1:5]))
