"""What the processor does with commands, independent of faust.

The ``events`` topic is the source of truth and the table a cache of its fold.
Per partition, commands are decided one after another (each on the state its
predecessors left, kept in an in-memory overlay) and their events are produced
at once, so many commands are in flight; but their effects are *completed* in
order, and only once Kafka has acknowledged their events: then the table is
updated, the reply is sent (the output gate) and the command's offset is acked.
The table also remembers, per partition, the offset of the last events record
it reflects; after a crash or a rebalance the processor first folds the records
past that offset into the table ("catch-up"), so a command whose events reached
the log is recognised as a duplicate when it is reprocessed: nothing is
produced twice, nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field

from opentelemetry.trace import SpanKind

from schemas.batches import EventBatch, encode_batch
from schemas.codec import MessageError, encode
from schemas.commands import Command, decode_command
from services.catalog import FlowCatalog
from services.conversation.service import decide_with_key, flow_for
from services.conversation.state import ConversationState, fold
from services.conversation.state_codec import decode_state, encode_state
from services.distributed.command_sealing import CommandSealError
from services.logs import conversation
from services.policy_port import EdgePolicy
from services.ports import KeyStore
from services.processor.metrics import ProcessorMetrics
from services.tracing import Headers, extract_headers, inject_headers, tracer

log = logging.getLogger(__name__)
# key, value, partition, headers -> (once produced) the record's offset when Kafka has it
SendEvents = Callable[[bytes, bytes, int, Headers], Awaitable[Awaitable[int]]]
SendReply = Callable[[bytes, bytes, int, Headers], Awaitable[None]]
ReadEventsAfter = Callable[[int, int], Awaitable[list[tuple[int, EventBatch]]]]
InContext = Callable[[Callable[[], None]], None]  # runs table writes in the event's context
MARKER_EVERY = 64


def marker_key(partition: int) -> bytes:
    """Table key of a partition's events offset (never a conversation id: those are UUIDs)."""
    return f"__events_offset__/{partition}".encode()


@dataclass
class InFlight:
    key: bytes
    state: ConversationState | None  # None: the command changed nothing
    delivered: Awaitable[int] | None  # the events record's offset, once Kafka has it
    reply: bytes
    reply_partition: int | None
    ack: Callable[[], None]
    in_context: InContext
    headers: Headers = ()  # the processor's trace context, for the reply record


@dataclass
class CommandHandler:
    table: MutableMapping[bytes, bytes]
    catalog: FlowCatalog
    policy: EdgePolicy
    keys: KeyStore
    send_events: SendEvents
    send_reply: SendReply
    read_events_after: ReadEventsAfter
    on_fatal: Callable[[BaseException], Awaitable[None]] | None = None
    open_command: Callable[[Command], Command] = lambda command: command
    depth: int = 1000
    metrics: ProcessorMetrics = field(default_factory=ProcessorMetrics)
    _overlay: dict[bytes, tuple[ConversationState, int]] = field(default_factory=dict)
    _queues: dict[int, asyncio.Queue[InFlight]] = field(default_factory=dict)
    _drainers: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _unmarked: dict[int, int] = field(default_factory=dict)

    def state(self, conversation_id: str) -> ConversationState:
        key = conversation_id.encode()
        if key in self._overlay:
            return self._overlay[key][0]
        raw = self.table.get(key)
        return ConversationState(conversation_id) if raw is None else decode_state(raw)

    async def catch_up(self, partition: int) -> int:
        """Fold the events records past the table's marker into the table; returns
        how many records it applied. Call it with nothing of the partition in flight."""
        marker = self.table.get(marker_key(partition))
        start = -1 if marker is None else int(marker)
        applied = 0
        for offset, batch in await self.read_events_after(partition, start):
            state = self.state(batch.conversation_id)
            fresh = [e for e in batch.events if e.seq > state.seq]
            if fresh:
                self.table[batch.conversation_id.encode()] = encode_state(fold(state, fresh))
                applied += 1
            self.table[marker_key(partition)] = str(offset).encode()
        return applied

    async def drained(self, partition: int) -> None:
        queue = self._queues.get(partition)
        if queue is not None:
            await queue.join()

    def in_flight(self) -> int:
        """Commands decided and not yet completed, over all partitions."""
        return sum(queue.qsize() for queue in self._queues.values())

    async def submit(
        self,
        partition: int,
        value: bytes,
        ack: Callable[[], None],
        in_context: InContext,
        headers: Headers = (),
    ) -> None:
        """Decide one command of ``partition`` and put its completion in line.
        ``headers`` are the command record's (its trace context, if any)."""
        item = await self._decide(partition, value, ack, in_context, headers)
        if item.state is not None:
            _, pending = self._overlay.get(item.key, (item.state, 0))
            self._overlay[item.key] = (item.state, pending + 1)
        await self._queue(partition).put(item)

    async def _decide(
        self,
        partition: int,
        value: bytes,
        ack: Callable[[], None],
        in_context: InContext,
        headers: Headers,
    ) -> InFlight:
        started = time.perf_counter()
        try:
            command = self.open_command(decode_command(value))
        except (MessageError, CommandSealError) as exc:
            reason = "unsealed" if isinstance(exc, CommandSealError) else "unreadable"
            self.metrics.rejected.labels(reason).inc()
            self.metrics.commands.labels("unknown", "unreadable").inc()
            log.warning("unreadable command skipped: %s", exc, extra={"partition": partition})
            return InFlight(b"", None, None, b"", None, ack, in_context)
        token = conversation.set(command.conversation_id)
        try:
            with tracer().start_as_current_span(
                "leadflow.processor.command",
                context=extract_headers(headers),
                kind=SpanKind.CONSUMER,
                attributes={"leadflow.command": command.type, "leadflow.partition": partition},
            ):
                out_headers = inject_headers()
                item = await self._decide_command(partition, command, ack, in_context, out_headers)
        finally:
            conversation.reset(token)
        self.metrics.decide_seconds.observe(time.perf_counter() - started)
        return item

    async def _decide_command(
        self,
        partition: int,
        command: Command,
        ack: Callable[[], None],
        in_context: InContext,
        headers: Headers,
    ) -> InFlight:
        state = self.state(command.conversation_id)
        flow = flow_for(self.catalog, state, command)
        decision = await decide_with_key(state, command, flow, self.policy, self.keys)
        error = decision.reply.error
        if error is None:
            self.metrics.commands.labels(command.type, "ok").inc()
        else:
            self.metrics.commands.labels(command.type, "refused").inc()
            self.metrics.rejected.labels(error.code).inc()
        key = command.conversation_id.encode()
        delivered = None
        if decision.events:
            events = encode_batch(decision.events)
            delivered = await self.send_events(key, events, partition, headers)
        reply_partition = int(command.reply_to) if command.reply_to.isdigit() else None
        new_state = decision.state if decision.events else None
        reply = encode(decision.reply)
        return InFlight(key, new_state, delivered, reply, reply_partition, ack, in_context, headers)

    def _queue(self, partition: int) -> asyncio.Queue[InFlight]:
        if partition not in self._queues:
            self._queues[partition] = asyncio.Queue(self.depth)
            self._drainers[partition] = asyncio.create_task(
                self._complete_in_order(partition), name=f"complete-{partition}"
            )
        return self._queues[partition]

    async def _complete_in_order(self, partition: int) -> None:
        queue = self._queues[partition]
        while True:
            item = await queue.get()
            try:
                await self._complete(partition, item)
            except Exception as exc:
                # a producer that lost a record cannot go on in order: crash, restart,
                # and let the catch-up from the log sort out what landed
                log.critical(
                    "completing a command failed",
                    exc_info=True,
                    extra={"conversation_id": item.key.decode(), "partition": partition},
                )
                if self.on_fatal is not None:
                    await self.on_fatal(exc)
                raise
            finally:
                queue.task_done()

    async def _complete(self, partition: int, item: InFlight) -> None:
        if item.delivered is not None and item.state is not None:
            offset = await item.delivered
            state, key = item.state, item.key
            # The marker may lag (catch-up then re-reads a few records and skips what the
            # table has), so it is written at the end of a burst or every MARKER_EVERY
            # commands rather than with every state: half the changelog records.
            self._unmarked[partition] = self._unmarked.get(partition, 0) + 1
            mark = self._queues[partition].qsize() == 0 or (
                self._unmarked[partition] >= MARKER_EVERY
            )

            def write() -> None:
                self.table[key] = encode_state(state)
                if mark:
                    self.table[marker_key(partition)] = str(offset).encode()

            item.in_context(write)
            if mark:
                self._unmarked[partition] = 0
            self._settle(key)
        if item.reply_partition is not None:
            await self.send_reply(item.key, item.reply, item.reply_partition, item.headers)
        item.ack()

    def _settle(self, key: bytes) -> None:
        state, pending = self._overlay[key]
        if pending <= 1:
            del self._overlay[key]
        else:
            self._overlay[key] = (state, pending - 1)
