"""What the processor does with one command, independent of faust.

The ``events`` topic is the source of truth and the table a cache of its fold:
events are produced (and acknowledged by Kafka) *before* the table is updated,
and the table remembers, per partition, the offset of the last events record it
reflects. After a crash or a rebalance, the processor first folds the records
past that offset into the table ("catch-up"), so a command whose events made it
to the log is recognised as a duplicate when it is reprocessed: nothing is
produced twice, nothing acknowledged is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass

from policy.port import EdgePolicy
from schemas.batches import EventBatch, encode_batch
from schemas.codec import MessageError, encode
from schemas.commands import Command, decode_command
from schemas.replies import Reply
from services.catalog import FlowCatalog
from services.conversation.service import decide_with_key, flow_for
from services.conversation.state import ConversationState, fold
from services.conversation.state_codec import decode_state, encode_state
from services.ports import KeyStore

log = logging.getLogger(__name__)
SendEvents = Callable[[bytes, bytes, int], Awaitable[int]]  # key, value, partition -> offset
SendReply = Callable[[bytes, bytes, int], Awaitable[None]]  # key, value, partition
ReadEventsAfter = Callable[[int, int], Awaitable[list[tuple[int, EventBatch]]]]


def marker_key(partition: int) -> bytes:
    """Table key of a partition's events offset (never a conversation id: those are UUIDs)."""
    return f"__events_offset__/{partition}".encode()


@dataclass
class CommandHandler:
    table: MutableMapping[bytes, bytes]
    catalog: FlowCatalog
    policy: EdgePolicy
    keys: KeyStore
    send_events: SendEvents
    send_reply: SendReply
    read_events_after: ReadEventsAfter

    def state(self, conversation_id: str) -> ConversationState:
        raw = self.table.get(conversation_id.encode())
        return ConversationState(conversation_id) if raw is None else decode_state(raw)

    async def catch_up(self, partition: int) -> int:
        """Fold the events records past the table's marker into the table; returns
        how many records it applied."""
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

    async def handle(self, partition: int, value: bytes) -> None:
        """Apply one command from ``commands`` partition ``partition``."""
        try:
            command = decode_command(value)
        except MessageError as exc:
            log.warning("unreadable command skipped: %s", exc, extra={"partition": partition})
            return
        state = self.state(command.conversation_id)
        flow = flow_for(self.catalog, state, command)
        decision = await decide_with_key(state, command, flow, self.policy, self.keys)
        key = command.conversation_id.encode()
        if decision.events:
            offset = await self.send_events(key, encode_batch(decision.events), partition)
            self.table[key] = encode_state(decision.state)
            self.table[marker_key(partition)] = str(offset).encode()
        await self._reply(command, decision.reply)

    async def _reply(self, command: Command, reply: Reply) -> None:
        if not command.reply_to.isdigit():
            log.warning(
                "command without a reply partition",
                extra={"conversation_id": command.conversation_id},
            )
            return
        await self.send_reply(
            command.conversation_id.encode(), encode(reply), int(command.reply_to)
        )
