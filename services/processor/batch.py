"""What a batch of commands of one partition produces, decided in order.

The processor's unit of work is a batch of consecutive ``commands`` records of
one partition. Each command is decided on the state its predecessors in the
batch left (an overlay over the partition's committed states); the batch's
output is then written in **one Kafka transaction**: the events records and
dead letters (and, every ``checkpoint_seconds``, the changed states: see
:mod:`services.processor.recovery`). Only after that
transaction commits are the states applied to memory, the replies sent (the
output gate) and the commands position handed to the group. A batch that fails before its
commit (Redis away, a broker error, a rebalance) changed nothing anywhere and
is decided again from scratch; a processor fenced by a newer owner of the
partition can write nothing at all.

This module holds no I/O of its own beyond the key store the decider may need
(a lead's key); everything it produces is returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.batches import encode_batch
from schemas.codec import MessageError, UnknownType, UnsupportedVersion, encode
from schemas.commands import Command, decode_command
from services.catalog import FlowCatalog
from services.conversation.service import decide_with_key, flow_for
from services.conversation.state import ConversationState
from services.conversation.state_codec import encode_state
from services.distributed.command_sealing import CommandSealError
from services.log_follower import LogRecord
from services.logs import conversation
from services.policy_port import EdgePolicy
from services.ports import KeyStore
from services.processor.metrics import ProcessorMetrics
from services.tracing import Headers, extract_headers, inject_headers, tracer

log = logging.getLogger(__name__)
MARKER_PREFIX = b"__events_offset__/"


def marker_key(partition: int) -> bytes:
    """Changelog key of a partition's last events offset (never a conversation id:
    those are UUIDs)."""
    return MARKER_PREFIX + str(partition).encode()


@dataclass(frozen=True, slots=True)
class Out:
    """A record the batch writes in its transaction. ``kind``: ``events`` (to the
    batch's own events partition), ``state`` (a checkpoint's, to the changelog,
    same partition), ``dead`` (the dead-letter topic: a command no processor
    can read) or ``command`` (a due timer's, to the partition's own commands
    partition: :mod:`services.processor.timers`)."""

    kind: str
    key: bytes
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class ReplyOut:
    key: bytes
    value: bytes
    partition: int
    headers: Headers = ()


@dataclass
class BatchOutput:
    records: list[Out] = field(default_factory=list)
    states: dict[bytes, ConversationState] = field(default_factory=dict)
    replies: list[ReplyOut] = field(default_factory=list)
    next_offset: int = 0  # the commands position once the batch is committed
    decided: int = 0  # how many records of the batch this output covers
    blocked: Exception | None = None  # why the rest could not be decided (Redis away)


@dataclass
class BatchDecider:
    """Decides batches; ``open_command`` opens sealed lead fields (the command
    secret), ``keys`` is asked only for a lead's key."""

    catalog: FlowCatalog
    policy: EdgePolicy
    keys: KeyStore
    open_command: Callable[[Command], Command] = lambda command: command
    metrics: ProcessorMetrics = field(default_factory=ProcessorMetrics)

    async def decide(
        self,
        partition: int,
        records: Sequence[LogRecord],
        committed: Mapping[bytes, ConversationState],
    ) -> BatchOutput:
        """The output of ``records`` decided in order over ``committed`` states.

        When a command cannot be decided (the key store raised: Redis away),
        the output covers the records before it (``decided``, ``next_offset``)
        and says why in ``blocked``: that prefix can be committed, and the rest
        decided again later, in order."""
        out = BatchOutput(next_offset=records[0].offset if records else 0)
        for record in records:
            try:
                await self._record(partition, record, out, committed)
            except Exception as exc:
                out.blocked = exc
                return out
            out.decided += 1
            out.next_offset = record.offset + 1
        return out

    async def _record(
        self,
        partition: int,
        record: LogRecord,
        out: BatchOutput,
        committed: Mapping[bytes, ConversationState],
    ) -> None:
        """Decide one record into ``out``; leaves ``out`` untouched if it raises."""
        command = self._open(partition, record, out)
        if command is not None:
            await self._command(partition, record, command, out, committed)

    async def _command(
        self,
        partition: int,
        record: LogRecord,
        command: Command,
        out: BatchOutput,
        committed: Mapping[bytes, ConversationState],
    ) -> None:
        started = time.perf_counter()
        key = command.conversation_id.encode()
        state = out.states.get(key) or committed.get(key)
        token = conversation.set(command.conversation_id)
        try:
            with tracer().start_as_current_span(
                "leadflow.processor.command",
                context=extract_headers(record.headers),
                attributes={"leadflow.command": command.type, "leadflow.partition": partition},
            ):
                headers = inject_headers()
                await self._decide_one(
                    command, state or ConversationState(command.conversation_id), out, headers
                )
        finally:
            conversation.reset(token)
        self.metrics.decide_seconds.observe(time.perf_counter() - started)

    def _open(self, partition: int, record: LogRecord, out: BatchOutput) -> Command | None:
        """The record's command, or None after writing it to the dead letters."""
        if record.value is None:
            return None
        try:
            return self.open_command(decode_command(record.value))
        except (MessageError, CommandSealError) as exc:
            reason = _dead_reason(exc)
            self.metrics.rejected.labels(reason).inc()
            self.metrics.commands.labels("unknown", "unreadable").inc()
            log.warning(
                "command dead-lettered: %s",
                reason,
                extra={"partition": partition, "offset": record.offset, "error": str(exc)[:200]},
            )
            headers = (
                ("leadflow-source-partition", str(partition).encode()),
                ("leadflow-source-offset", str(record.offset).encode()),
                ("leadflow-reason", reason.encode()),
            )
            out.records.append(Out("dead", record.key or b"", record.value, headers))
            return None

    async def _decide_one(
        self, command: Command, state: ConversationState, out: BatchOutput, headers: Headers
    ) -> None:
        flow = flow_for(self.catalog, state, command)
        decision = await decide_with_key(state, command, flow, self.policy, self.keys)
        error = decision.reply.error
        if error is None:
            self.metrics.commands.labels(command.type, "ok").inc()
        else:
            self.metrics.commands.labels(command.type, "refused").inc()
            self.metrics.rejected.labels(error.code).inc()
        key = command.conversation_id.encode()
        if decision.events:
            out.records.append(Out("events", key, encode_batch(decision.events), headers))
            out.states[key] = decision.state
        if command.reply_to.isdigit():
            out.replies.append(
                ReplyOut(key, encode(decision.reply), int(command.reply_to), headers)
            )


def state_records(
    keys: Iterable[bytes],
    new: Mapping[bytes, ConversationState],
    committed: Mapping[bytes, ConversationState],
) -> list[Out]:
    """A checkpoint: the changelog records of ``keys``' states (``new`` over
    ``committed``)."""
    return [Out("state", key, encode_state(new.get(key) or committed[key])) for key in keys]


def _dead_reason(exc: Exception) -> str:
    if isinstance(exc, CommandSealError):
        return "unsealed"
    if isinstance(exc, UnsupportedVersion | UnknownType):
        return "newer_format"
    return "unreadable"
