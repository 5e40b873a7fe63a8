"""Where a press's time goes, from the records' own timestamps.

Every Kafka record carries its producer's wall-clock time (CreateTime, ms) taken when
``send`` was called. A traced press is matched to its ``commands`` record (by
conversation id and seq), its ``events`` record (``EventBatch.command_seq``) and its
``replies`` record (by the command's ``request_id``), which splits it into:

* ``ws_to_command``: the client sends the frame -> the gateway calls produce
  (WebSocket, the gateway's parsing);
* ``command_to_events``: -> the processor produces the events in its batch's
  transaction (linger, broker, the processor's fetch, the partition's queue, the
  decisions of the batch up to this command);
* ``events_to_reply``: -> the processor produces the reply (the rest of the batch, the
  transaction's commit: states, marker and commands position; replies go after it);
* ``reply_to_ws``: -> the client has the frame completing the reply (broker, the
  gateway's fetch of ``replies``, frames, WebSocket).

Timestamps are whole milliseconds, so each stage is +-1 ms; the percentiles still show
which stage grows with load. The topics are read ``read_committed``, as every reader of
the log must: a batch whose transaction was aborted (and decided again) leaves its
records in the partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.kafka.sysstats import Json, summarize
from services.distributed.settings import KafkaSettings

STAGES = ("ws_to_command", "command_to_events", "events_to_reply", "reply_to_ws")
# (conversation id, command seq, sent at, received at): wall-clock seconds
Trace = tuple[str, int, float, float]


@dataclass
class Log:
    commands: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    events: dict[tuple[str, int], int] = field(default_factory=dict)
    replies: dict[str, int] = field(default_factory=dict)


async def _read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes, int]]:
    """Every (value, timestamp ms) of a topic, up to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes, int]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                out.extend((r.value or b"", r.timestamp) for r in records)
        return out
    finally:
        await consumer.stop()


async def read_log(settings: KafkaSettings) -> Log:
    log = Log()
    boot = settings.bootstrap
    for value, ts in await _read_all(boot, settings.commands_topic, settings.partitions):
        obj = orjson.loads(value)
        log.commands[(obj["conversation_id"], obj["seq"])] = (obj["request_id"], ts)
    for value, ts in await _read_all(boot, settings.events_topic, settings.partitions):
        obj = orjson.loads(value)
        log.events[(obj["conversation_id"], obj["command_seq"])] = ts
    for value, ts in await _read_all(boot, settings.replies_topic, settings.reply_partitions):
        log.replies[orjson.loads(value)["request_id"]] = ts
    return log


def breakdown(traces: list[Trace], log: Log) -> Json:
    """Per stage: count, mean and percentiles (ms) over the traced presses found in the log."""
    spans: dict[str, list[int]] = {stage: [] for stage in STAGES}
    unmatched = 0
    for cid, seq, sent, received in traces:
        command = log.commands.get((cid, seq))
        events = log.events.get((cid, seq))
        reply = None if command is None else log.replies.get(command[0])
        if command is None or events is None or reply is None:
            unmatched += 1
            continue
        points = (sent * 1000, command[1], events, reply, received * 1000)
        for stage, a, b in zip(STAGES, points, points[1:], strict=False):
            spans[stage].append(int((b - a) * 1e6))
    out: Json = {"traced": len(traces), "unmatched": unmatched}
    out.update({stage: summarize(samples) for stage, samples in spans.items()})
    return out


async def topic_sizes(bootstrap: str, prefix: str) -> dict[str, int]:
    """Offsets used in each of this run's topics (the processors' changelog and dead
    letters included): the records written, plus one transaction marker per partition a
    processor's transaction wrote to, plus any aborted records."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        ours = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        out: dict[str, int] = {}
        for described in await admin.describe_topics(ours):
            topic = described["topic"]
            tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
            if tps:
                out[topic.removeprefix(prefix)] = sum((await consumer.end_offsets(tps)).values())
        return out
    finally:
        await consumer.stop()
        await admin.close()
