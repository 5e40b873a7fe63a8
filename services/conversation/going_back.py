"""Going back: which step a ``GoBack`` re-opens, or why it cannot (pure).

A visitor may change their **last answer**: the newest step answered on a
``question`` or ``input`` node. Going back withdraws that answer and everything
after it (the steps it led to), and asks the question again; conditions and
templates then forget the withdrawn answers (:mod:`services.conversation.state`
truncates the steps at ``WentBack``).

It is refused (``cannot_go_back``, the command's seq used up) when

* the conversation has completed (its outcome is final);
* no step was answered on a question or input node yet;
* a lead was captured after that step: a lead already delivered cannot be
  taken back, so neither can the answers it was captured with.

A ``GoBack`` naming a node other than the current one is stale (the visitor saw
an older screen) and refused as ``wrong_node``, like a stale press.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.flow import Flow, NodeKind
from schemas.replies import ErrorCode
from services.conversation.state import LEAD_SUBMITTED, ConversationState, Step

NOTHING_TO_CHANGE = "There is no earlier answer to change."
LEAD_ALREADY_SENT = "Your details were already sent, so earlier answers can no longer be changed."
ENDED = "This conversation has ended, so its answers can no longer be changed."

_ANSWERABLE = (NodeKind.QUESTION, NodeKind.INPUT)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: ErrorCode
    detail: str = ""


def last_answered(state: ConversationState, flow: Flow) -> int | None:
    """The index in ``state.steps`` of the newest step answered on a question or
    input node, None if there is none."""
    for i in range(len(state.steps) - 1, -1, -1):
        step = state.steps[i]
        node = flow.nodes.get(step.node_id)
        if step.answer is not None and node is not None and node.kind in _ANSWERABLE:
            return i
    return None


def step_to_reopen(state: ConversationState, flow: Flow, node_id: str) -> Step | Refusal:
    """The step a ``GoBack`` from ``node_id`` (the node the visitor sees as
    current) re-opens, or the refusal."""
    if state.status == "completed":
        return Refusal("cannot_go_back", ENDED)
    if node_id != state.current_node:
        return Refusal("wrong_node")
    index = last_answered(state, flow)
    if index is None:
        return Refusal("cannot_go_back", NOTHING_TO_CHANGE)
    if any(s.answer == LEAD_SUBMITTED for s in state.steps[index + 1 :]):
        return Refusal("cannot_go_back", LEAD_ALREADY_SENT)
    return state.steps[index]
