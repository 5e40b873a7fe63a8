"""The conversation service's shell: load state, decide, persist, reply.

Commands of one conversation are handled one at a time (a per-conversation
lock, like a Durable Object's input gate), and a reply leaves only after the
events it reports are durable in the log (the output gate). State is cached in
memory and otherwise rebuilt by folding the conversation's events, so a
process killed at any point resumes from the log alone.

Each command that produces events is handed to the log with them, for the
command journal (sealed where it holds contact details,
:mod:`services.conversation.journal`): the log writes both in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from schemas.commands import Command, StartConversation
from schemas.events import Event
from schemas.flow import Flow
from schemas.replies import Reply, ReplyError
from services.catalog import FlowCatalog
from services.conversation.decider import Decision, decide
from services.conversation.journal import needs_key, seal_for_journal
from services.conversation.sealing import AesGcmSealer, KeyRequired, NoSealer
from services.conversation.state import ConversationState, fold
from services.conversation.timers import TimerQueue, pending_timers
from services.policy_port import EdgePolicy
from services.ports import EventLog, KeyStore

log = logging.getLogger(__name__)
EventsListener = Callable[[Sequence[Event]], None]


class KeyedLocks:
    """One asyncio.Lock per key, dropped once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class StateCache:
    """A bounded LRU of conversation states; a miss costs one fold from the log."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, ConversationState] = OrderedDict()

    def get(self, conversation_id: str) -> ConversationState | None:
        state = self._states.get(conversation_id)
        if state is not None:
            self._states.move_to_end(conversation_id)
        return state

    def put(self, state: ConversationState) -> None:
        self._states[state.conversation_id] = state
        self._states.move_to_end(state.conversation_id)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def __len__(self) -> int:
        return len(self._states)


class ConversationService:
    def __init__(
        self,
        log: EventLog,
        keys: KeyStore,
        catalog: FlowCatalog,
        policy: EdgePolicy,
        *,
        cache_size: int = 100_000,
        on_events: EventsListener | None = None,
        timers: TimerQueue | None = None,
    ) -> None:
        self._log = log
        self._keys = keys
        self._catalog = catalog
        self._policy = policy
        self._cache = StateCache(cache_size)
        self._locks = KeyedLocks()
        self._on_events = on_events
        self.timers = timers

    async def handle(self, command: Command) -> Reply:
        """Apply one command; the reply is sent only after its events are durable."""
        async with self._locks.hold(command.conversation_id):
            fresh = isinstance(command, StartConversation) and command.fresh
            state = await self.state(command.conversation_id, fresh)
            flow = flow_for(self._catalog, state, command)
            decision, key = await _decide_and_key(state, command, flow, self._policy, self._keys)
            if decision.events:
                try:
                    if key is None and needs_key(command, decision.events):
                        key = await self._keys.get_or_create(command.conversation_id)
                    journaled = seal_for_journal(command, decision.events, key)
                    await self._log.append(decision.events, journaled)
                except Exception:
                    log.exception(
                        "event log append failed", extra={"conversation_id": state.conversation_id}
                    )
                    return _unavailable(command, state)
                if self._on_events is not None:
                    self._on_events(decision.events)
            self._cache.put(decision.state)
            self._schedule(decision.state, flow, command.reply_to)
            return decision.reply

    def _schedule(self, state: ConversationState, flow: Flow | None, reply_to: str) -> None:
        """Keep the conversation's pending timers (if its flow declares any)."""
        if self.timers is not None and flow is not None and flow.timers.any:
            self.timers.set(state.conversation_id, pending_timers(state, flow), reply_to)

    async def schedule_timers(self, conversation_ids: Sequence[str]) -> int:
        """Rebuild the pending timers of these conversations from the log (after a
        start: the queue lives in memory only); how many conversations have some."""
        scheduled = 0
        for conversation_id in conversation_ids:
            async with self._locks.hold(conversation_id):
                state = await self.state(conversation_id)
                if state.status != "active":
                    continue
                flow = self._catalog.get(state.flow_id, state.flow_version)
                self._schedule(state, flow, "")
                scheduled += bool(flow is not None and pending_timers(state, flow))
        return scheduled

    async def state(self, conversation_id: str, fresh: bool = False) -> ConversationState:
        """The conversation's state: cached, else folded from the log, unless it is
        ``fresh`` (an id the gateway just minted: nothing to read)."""
        cached = self._cache.get(conversation_id)
        if cached is not None:
            return cached
        if fresh:
            return ConversationState(conversation_id)
        events = await self._log.read_conversation(conversation_id)
        return fold(ConversationState(conversation_id), events)


def flow_for(catalog: FlowCatalog, state: ConversationState, command: Command) -> Flow | None:
    """The flow a command runs on: for a start the version it pins (a preview's
    draft) or else the site's active one, afterwards the very version the
    conversation started on. Only a preview may start on a draft."""
    if state.status == "new":
        if not isinstance(command, StartConversation):
            return None
        if command.flow_version == 0:
            return catalog.for_site(command.flow_id, command.site_id)
        if command.flow_version < 0 and not command.preview:
            return None
        return catalog.get(command.flow_id, command.flow_version)
    return catalog.get(state.flow_id, state.flow_version)


async def decide_with_key(
    state: ConversationState,
    command: Command,
    flow: Flow | None,
    policy: EdgePolicy,
    keys: KeyStore,
) -> Decision:
    """Decide without a key first; fetch (or create) the conversation's key only
    when the decision seals lead details or a personal answer, or its reply shows
    one (a template), so keys exist only for conversations with personal data."""
    decision, _ = await _decide_and_key(state, command, flow, policy, keys)
    return decision


async def _decide_and_key(
    state: ConversationState,
    command: Command,
    flow: Flow | None,
    policy: EdgePolicy,
    keys: KeyStore,
) -> tuple[Decision, bytes | None]:
    """:func:`decide_with_key`, and the key when it fetched one."""
    try:
        no_key = NoSealer()
        return decide(state, command, flow, policy, no_key, no_key), None
    except KeyRequired:
        key = await keys.get_or_create(command.conversation_id)
        sealer = AesGcmSealer(key)
        return decide(state, command, flow, policy, sealer, sealer), key


def _unavailable(command: Command, state: ConversationState) -> Reply:
    return Reply(
        conversation_id=command.conversation_id,
        command_seq=command.seq,
        ack=state.last_command_seq,
        error=ReplyError(
            code="unavailable", message="Please try again in a moment.", retryable=True
        ),
        reply_to=command.reply_to,
        request_id=command.request_id,
    )


class InProcessCommandBus:
    """The embedded mode's bus: commands go straight to the in-process service."""

    def __init__(self, service: ConversationService) -> None:
        self._service = service

    async def send(self, command: Command) -> Reply:
        return await self._service.handle(command)
