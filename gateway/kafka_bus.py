"""The gateway's CommandBus over Kafka (the distributed mode).

A command is produced to ``commands`` keyed by its conversation id (acks=all,
idempotent producer) and the gateway waits for the reply on its own partition
of ``replies`` (manual assignment, no consumer group, so gateways never
rebalance). The reply is the visitor's acknowledgement: it exists only once the
processor has the command from Kafka and its events are in the log.

Each command is one trace (services/tracing.py): a span from produce to reply whose
context rides in the command record's headers; the processor's span is its child, and
the reply's arrival is recorded as a child of the processor's span (its context is in
the reply record's headers). Without an exporter and without an incoming trace
(:func:`~services.tracing.tracing_active`) none of that work is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from schemas.codec import MessageError, encode
from schemas.commands import Command
from schemas.replies import Reply, decode_reply
from services.distributed.command_sealing import CommandSealer
from services.distributed.settings import KafkaSettings
from services.logs import conversation
from services.pushes import Pushes
from services.tracing import Headers, extract_headers, inject_headers, tracer, tracing_active

log = logging.getLogger(__name__)
PROBE_SECONDS = 2.0


class KafkaCommandBus:
    def __init__(self, settings: KafkaSettings, ordinal: int, sealer: CommandSealer) -> None:
        self._settings = settings
        self._sealer = sealer
        self._ordinal = ordinal
        self._partition = TopicPartition(settings.replies_topic, ordinal)
        self._pending: dict[str, asyncio.Future[tuple[Reply, Headers]]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self.healthy = False
        # a reply nobody asked for (a fired timer's: no request id) goes to its socket
        self.pushes: Pushes | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **self._settings.client_kwargs(),
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # no timer: commands sent while a request is in flight batch anyway
            request_timeout_ms=10_000,
        )
        self._consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=500,  # a fetch returns as soon as a reply is there
        )
        await self._producer.start()
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_end(self._partition)
        self._reader = asyncio.create_task(self._read_replies(), name="replies")
        self._prober = asyncio.create_task(self._probe(), name="kafka-probe")
        self.healthy = True

    async def stop(self) -> None:
        self.healthy = False
        for task in (self._prober, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        for fut in self._pending.values():
            fut.cancel()

    async def send(self, command: Command) -> Reply:
        """Produce ``command`` and wait for its reply (the caller bounds the wait).
        Raises ConnectionError when Kafka does not take the command."""
        if self._producer is None:
            raise ConnectionError("the Kafka bus is not started")
        request_id = uuid.uuid4().hex
        command = self._sealer.seal(
            replace(command, reply_to=str(self._ordinal), request_id=request_id)
        )
        future: asyncio.Future[tuple[Reply, Headers]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        token = conversation.set(command.conversation_id)
        try:
            if not tracing_active():
                return await self._produce_and_wait(command, future, traced=False)
            with tracer().start_as_current_span(
                "leadflow.gateway.command",
                kind=SpanKind.PRODUCER,
                attributes={"leadflow.command": command.type},
            ):
                return await self._produce_and_wait(command, future)
        finally:
            conversation.reset(token)
            self._pending.pop(request_id, None)

    async def _produce_and_wait(
        self,
        command: Command,
        future: asyncio.Future[tuple[Reply, Headers]],
        *,
        traced: bool = True,
    ) -> Reply:
        assert self._producer is not None
        try:
            await self._producer.send_and_wait(
                self._settings.commands_topic,
                key=command.conversation_id.encode(),
                value=encode(command),
                headers=inject_headers() if traced else None,
            )
        except KafkaError as exc:
            self.healthy = False
            raise ConnectionError(f"Kafka did not take the command: {exc}") from exc
        self.healthy = True
        reply, headers = await future
        if traced:  # the reply's arrival, as a child of the processor's span
            tracer().start_span(
                "leadflow.gateway.reply",
                context=extract_headers(headers),
                kind=SpanKind.CONSUMER,
                attributes={"leadflow.command": command.type},
            ).end()
        log.debug("reply received", extra={"command": command.type})
        return reply

    async def _probe(self) -> None:
        """Readiness follows the broker: a metadata round trip every PROBE_SECONDS,
        so a gateway with no traffic still turns ready again when Kafka returns."""
        assert self._producer is not None
        while True:
            try:
                self.healthy = bool(
                    await asyncio.wait_for(
                        self._producer.client.force_metadata_update(), PROBE_SECONDS
                    )
                )
            except (TimeoutError, KafkaError):
                self.healthy = False
            await asyncio.sleep(PROBE_SECONDS)

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=1000, max_records=500)
            except KafkaError:
                log.warning("reading replies failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    self._resolve(record.value, record.headers)

    def _resolve(self, data: bytes | None, headers: Headers = ()) -> None:
        if data is None:
            return
        try:
            reply = decode_reply(data)
        except MessageError:
            log.warning("unreadable reply skipped")
            return
        if not reply.request_id:
            if self.pushes is not None:
                self.pushes.push(reply)
            return
        future = self._pending.get(reply.request_id)
        if future is not None and not future.done():
            future.set_result((reply, headers))
