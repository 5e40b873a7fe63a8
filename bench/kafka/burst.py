"""The processor alone: commands produced straight to ``commands`` (no gateway, no
WebSocket), replies read straight from a ``replies`` partition no gateway uses.

A burst of ``StartConversation`` commands for fresh conversations, then (the mixed
part) one ``PressButton`` for each conversation its start left on a question (an
``AnswerQuestion`` for one left on a free-text question: solar-quote asks a first
name): the time from the first produce to the last reply gives commands/s of one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.embedded.protocol import input_value
from bench.kafka.config import FLOWS, SITE
from bench.kafka.sysstats import Json, summarize
from schemas.codec import MessageError, encode
from schemas.commands import AnswerQuestion, Command, PressButton, StartConversation
from schemas.replies import Reply, decode_reply
from services.distributed.settings import KafkaSettings

BURST_TIMEOUT_S = 60.0


@dataclass
class BurstClient:
    settings: KafkaSettings
    reply_partition: int
    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _reader: asyncio.Task[None] | None = None
    _waiting: dict[str, int] = field(default_factory=dict)  # request id -> sent at (ns)
    _replies: dict[str, tuple[int, Reply]] = field(default_factory=dict)
    _all_in: asyncio.Event = field(default_factory=asyncio.Event)
    unreadable: int = 0

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
        )
        await self._producer.start()
        await self._consumer.start()
        tp = TopicPartition(self.settings.replies_topic, self.reply_partition)
        self._consumer.assign([tp])
        await self._consumer.seek_to_end(tp)
        await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read(), name="burst-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            now = time.perf_counter_ns()
            for records in batches.values():
                for record in records:
                    try:
                        reply = decode_reply(record.value or b"")
                    except MessageError:
                        self.unreadable += 1
                        continue
                    if reply.request_id in self._waiting:
                        self._replies[reply.request_id] = (now, reply)
            if self._waiting and len(self._replies) >= len(self._waiting):
                self._all_in.set()

    async def run(self, commands: list[Command]) -> tuple[Json, list[Reply]]:
        """Produce ``commands`` as fast as the producer takes them; wait for every reply."""
        assert self._producer is not None
        self._waiting, self._replies = {}, {}
        self._all_in.clear()
        t0 = time.perf_counter_ns()
        pending = []
        for command in commands:
            self._waiting[command.request_id] = time.perf_counter_ns()
            key = command.conversation_id.encode()
            pending.append(
                await self._producer.send(
                    self.settings.commands_topic, key=key, value=encode(command)
                )
            )
        await asyncio.gather(*pending)
        produced = time.perf_counter_ns()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_in.wait(), BURST_TIMEOUT_S)
        replies = list(self._replies.values())
        end = max((at for at, _ in replies), default=time.perf_counter_ns())
        latencies = [at - self._waiting[r.request_id] for at, r in replies]
        errors: dict[str, int] = {}
        for _, reply in replies:
            if reply.error is not None:
                errors[reply.error.code] = errors.get(reply.error.code, 0) + 1
        elapsed = (end - t0) / 1e9
        result: Json = {
            "commands": len(commands),
            "replies": len(replies),
            "missing_replies": len(commands) - len(replies),
            "error_replies": errors,
            "produce_s": round((produced - t0) / 1e9, 3),
            "elapsed_s": round(elapsed, 3),
            "commands_per_s": round(len(replies) / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": {"reply": summarize(latencies)},
        }
        return result, [r for _, r in replies]


def starts(count: int, reply_to: int, rng: random.Random) -> list[Command]:
    now = time.time()
    return [
        StartConversation(
            conversation_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            seq=1,
            at=now,
            flow_id=FLOWS[i % len(FLOWS)],
            site_id=SITE,
            reply_to=str(reply_to),
            request_id=uuid.uuid4().hex,
        )
        for i in range(count)
    ]


def presses(replies: list[Reply], reply_to: int, rng: random.Random) -> list[Command]:
    """One press (seq 2) for each conversation whose start left it on a question, one
    answer for each left on a free-text question."""
    out: list[Command] = []
    now = time.time()
    for reply in replies:
        last = reply.messages[-1] if reply.messages else None
        if reply.error is not None or last is None:
            continue
        if last.kind == "input" and last.input is not None:
            spec = last.input
            choices = [{"id": c.id} for c in spec.choices]
            value = input_value(
                {"type": spec.type, "min": spec.min, "max": spec.max, "choices": choices}
            )
            out.append(
                AnswerQuestion(
                    conversation_id=reply.conversation_id,
                    seq=2,
                    at=now,
                    node_id=last.node_id,
                    value=value,
                    reply_to=str(reply_to),
                    request_id=uuid.uuid4().hex,
                )
            )
            continue
        if last.kind != "question":
            continue
        out.append(
            PressButton(
                conversation_id=reply.conversation_id,
                seq=2,
                at=now,
                node_id=last.node_id,
                button_id=rng.choice(last.buttons).id,
                reply_to=str(reply_to),
                request_id=uuid.uuid4().hex,
            )
        )
    return out
