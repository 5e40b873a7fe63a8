"""A simulated visitor and their conversation through the flow: the walk. Pure.

A conversation walks the flow's graph: message nodes advance, a question takes
the visitor's answer, a free-text question (an ``input`` node: solar-quote asks
the first name) is answered (recorded as ``(node, "answered")``, as the decider
gives it to the policy; its value is not simulated, so a conditional ``next``
takes its default), and at a *decision point* (a button with several candidate
edges) a :data:`Chooser` (an arm, the oracle's plan) picks the edge. The walk
stops at the lead form or at an end node.

A module of its own because the walk reads only the flow and the visitor, never
the truth: :mod:`policy.sim.population` draws the visitors and holds the true
lead probabilities, and plays a visitor's conversation with :func:`walk`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from policy.features import Cell
from schemas.commands import VisitorContext
from schemas.flow import Flow, NodeKind
from services.conversation.state import INPUT_ANSWERED
from services.policy_port import DecisionPoint

PointKey = tuple[str, str]  # (node id, button id)
MAX_STEPS = 64


@dataclass(frozen=True, slots=True)
class Visitor:
    index: int  # arrival order, from 0
    conversation_id: str
    started_at: float
    context: VisitorContext
    cell: Cell  # at the start of the conversation: what the truth depends on
    answers: Mapping[str, str]  # question node id -> the button this visitor presses
    seconds_per_answer: float
    draw: float  # uniform in [0, 1): a lead iff draw < P(lead) (the same draw for every arm)
    kind: str = ""  # the hidden visitor type ("" in worlds without one)

    def at(self, command_seq: int) -> float:
        """When the visitor sends the command with this seq (1 is the start)."""
        return self.started_at + self.seconds_per_answer * (command_seq - 1)


@dataclass(frozen=True, slots=True)
class Conversation:
    """One visitor's walk through the flow under one arm."""

    answered: tuple[PointKey, ...]
    decisions: tuple[tuple[PointKey, str], ...]  # (decision point, edge taken)
    end_node: str
    answered_at: tuple[int, ...] = ()  # per decision: len(answered) when it was taken


Chooser = Callable[[DecisionPoint, Visitor], str]


def walk(flow: Flow, visitor: Visitor, choose: Chooser) -> Conversation:
    """Play the visitor's conversation; ``choose`` picks the edge at each decision point."""
    node = flow.node(flow.start)
    seq = 1  # StartConversation
    answered: list[PointKey] = []
    decisions: list[tuple[PointKey, str]] = []
    answered_at: list[int] = []
    for _ in range(MAX_STEPS):
        if node.kind is NodeKind.INPUT:  # the visitor types an answer: one command
            seq += 1
            answered.append((node.id, INPUT_ANSWERED))
        if node.kind in (NodeKind.MESSAGE, NodeKind.INPUT):
            assert node.next is not None  # a conditional next's default branch
            node = flow.node(node.next)
            continue
        if node.kind is not NodeKind.QUESTION:
            break
        button = node.button(visitor.answers[node.id])
        assert button is not None
        seq += 1
        answered.append((node.id, button.id))
        target = button.next[0]
        if button.is_decision_point:
            point = DecisionPoint(
                conversation_id=visitor.conversation_id,
                command_seq=seq,
                flow_id=flow.id,
                flow_version=flow.version,
                node_id=node.id,
                button_id=button.id,
                candidates=button.next,
                context=visitor.context,
                answers=tuple(answered),
                at=visitor.at(seq),
            )
            target = choose(point, visitor)
            if target not in button.next:
                raise ValueError(f"{node.id}/{button.id}: {target!r} is not a candidate")
            decisions.append(((node.id, button.id), target))
            answered_at.append(len(answered))
        node = flow.node(target)
    return Conversation(tuple(answered), tuple(decisions), node.id, tuple(answered_at))
