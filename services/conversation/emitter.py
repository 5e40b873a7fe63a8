"""Events as one command produces them: numbered, with deterministic ids. Pure.

The decider (:mod:`services.conversation.decider`) appends a command's events
through an :class:`Emitter`: each gets the conversation's next seq and the id
:func:`schemas.events.event_id` derives from it, so the same (state, command)
gives the same events with the same ids. The emitter also enters nodes
(auto-advancing through messages and branches) and folds the events so far
for the conditions that read them.
"""

from __future__ import annotations

from typing import TypedDict

from schemas.commands import Command
from schemas.events import CommandRejected, ConversationCompleted, Event, NodeEntered, event_id
from schemas.expression_evaluation import condition
from schemas.flow import MAX_AUTO_ADVANCE, Branch, Flow, NodeKind
from schemas.replies import ErrorCode
from services.conversation.replies import ERROR_MESSAGES
from services.conversation.scope import Scope
from services.conversation.state import ConversationState, fold


class Header(TypedDict):
    conversation_id: str
    seq: int
    id: str
    at: float
    command_seq: int


class Emitter:
    """Numbers events as they are produced: seq and deterministic id."""

    def __init__(self, state: ConversationState, command: Command) -> None:
        self.state = state
        self.cid = state.conversation_id
        self.seq = state.seq
        self.at = command.at
        self.command_seq = command.seq
        self.events: list[Event] = []
        self._folded = state
        self._folded_count = 0
        self._scope: Scope | None = None

    def folded(self) -> ConversationState:
        """The state with this command's events so far, each folded once (a
        condition reads it, and so does the decision at the end)."""
        if self._folded_count < len(self.events):
            self._folded = fold(self._folded, self.events[self._folded_count :])
            self._folded_count = len(self.events)
        return self._folded

    def next_header(self) -> Header:
        self.seq += 1
        return {
            "conversation_id": self.cid,
            "seq": self.seq,
            "id": event_id(self.cid, self.seq),
            "at": self.at,
            "command_seq": self.command_seq,
        }

    def enter(self, flow: Flow, node_id: str, lead_captured: bool) -> None:
        """Enter a node and auto-advance through message nodes."""
        for _ in range(MAX_AUTO_ADVANCE):
            node = flow.node(node_id)
            self.events.append(
                NodeEntered(**self.next_header(), node_id=node_id, kind=node.kind.value)
            )
            if node.kind is NodeKind.END:
                self.events.append(
                    ConversationCompleted(
                        **self.next_header(), node_id=node_id, lead_captured=lead_captured
                    )
                )
                return
            if node.kind is not NodeKind.MESSAGE or node.next is None:
                return
            node_id = self.branch(flow, node.branches)[0] if node.branches else node.next
        raise ValueError(f"flow {flow.key} auto-advances more than {MAX_AUTO_ADVANCE} nodes")

    def branch(self, flow: Flow, branches: tuple[Branch, ...]) -> tuple[str, ...]:
        """The ``to`` of the first branch whose condition holds on the state with
        this command's events so far (an answer just given included), else the
        default's. Conditions read values in clear only: no key is needed."""
        folded = self.folded()
        scope = self._scope
        if scope is None or scope.state is not folded:  # one index of the variables per state
            scope = self._scope = Scope(flow, folded, None)
        for branch in branches:
            if branch.when is None or condition(branch.when)(scope.condition_value):
                return branch.to
        return branches[-1].to


def rejected(
    em: Emitter,
    command: Command,
    code: ErrorCode,
    *,
    consumed: bool,
    detail: str = "",
    fields: dict[str, str] | None = None,
) -> None:
    """Log ``command`` as refused with ``code`` (``consumed``: whether it used its
    seq up; ``detail``: the message, by default the code's; ``fields``: per lead
    field, what is wrong with it)."""
    em.events.append(
        CommandRejected(
            **em.next_header(),
            command_type=command.type,
            reason=code,
            detail=detail or ERROR_MESSAGES.get(code, code),
            consumed=consumed,
            fields=fields or {},
        )
    )
