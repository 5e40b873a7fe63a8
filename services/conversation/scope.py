"""Variables of a conversation: what conditions and templates read (pure).

A variable is the latest answer stored under a name (a question's or input's
``variable``, a lead form's field names) or a visitor context field. Conditions
read only values in clear (:meth:`Scope.condition_value`): button ids,
non-personal free-text answers, the context. Templates read display values
(:meth:`Scope.display_value`): a button's label, a choice's label, a free-text
answer, and personal values, which are opened with the conversation key in
memory only, through the ``opener`` port; without one (``replay --verify``), or
when the key is erased, a personal value is missing and renders its fallback.
"""

from __future__ import annotations

from typing import Protocol

import orjson

from schemas.expression_tree import Var
from schemas.flow import Flow, Node, NodeKind
from services.conversation.sealing import Unsealable
from services.conversation.state import (
    INPUT_ANSWERED,
    LEAD_SUBMITTED,
    ConversationState,
    Step,
)

_UNSEEN = object()
_ANSWERED = (NodeKind.QUESTION, NodeKind.INPUT)


class Opener(Protocol):
    """Opens what the conversation key sealed (:class:`AesGcmSealer`); may raise
    :class:`KeyRequired` to ask the shell for the key."""

    def open(self, sealed: str, event_id: str) -> bytes: ...


class Scope:
    def __init__(self, flow: Flow, state: ConversationState, opener: Opener | None) -> None:
        self._flow = flow
        self._state = state
        self._opener = opener
        self._latest: dict[str, tuple[Node, Step] | None] | None = None

    @property
    def state(self) -> ConversationState:
        return self._state

    def _find(self, name: str) -> tuple[Node, Step] | None:
        """The latest answer stored under ``name`` (its node and step), looked up
        once per name: a reply reads a name or two, so a backwards scan for each
        is cheaper than an index of every variable."""
        found = self._latest.get(name, _UNSEEN) if self._latest is not None else _UNSEEN
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        result: tuple[Node, Step] | None = None
        nodes = self._flow.nodes
        for step in reversed(self._state.steps):
            if step.answer is None:
                continue
            node = nodes.get(step.node_id)
            if node is None:
                continue
            if node.kind is NodeKind.LEAD_FORM and step.answer == LEAD_SUBMITTED:
                if any(f.name == name for f in node.fields):
                    result = (node, step)
                    break
            elif node.kind in _ANSWERED and node.variable == name:
                result = (node, step)
                break
        if self._latest is None:
            self._latest = {}
        self._latest[name] = result
        return result

    def condition_value(self, var: Var) -> str | None:
        """The value a condition compares: a button id, a clear answer, a context field."""
        if var.scope == "context":
            value = getattr(self._state.context, var.name, None)
            return value if isinstance(value, str) else None
        found = self._find(var.name)
        if found is None:
            return None
        node, step = found
        if node.kind is NodeKind.QUESTION:
            return step.answer
        if node.kind is NodeKind.INPUT and step.answer == INPUT_ANSWERED and not step.sealed:
            return step.value
        return None

    def display_value(self, var: Var) -> str | None:
        """The value a template shows (labels for ids; personal values opened)."""
        if var.scope == "context":
            return self.condition_value(var)
        found = self._find(var.name)
        if found is None:
            return None
        node, step = found
        if node.kind is NodeKind.QUESTION:
            button = node.button(step.answer or "")
            return button.label if button else None
        if node.kind is NodeKind.LEAD_FORM:
            fields = self._open_json(step)
            value = fields.get(var.name) if isinstance(fields, dict) else None
            return value if isinstance(value, str) else None
        return self.input_display(node, step)

    def input_display(self, node: Node, step: Step) -> str | None:
        """A free-text answer as the visitor gave it (a choice by its label)."""
        if step.answer != INPUT_ANSWERED:
            return None
        value = step.value
        if step.sealed:
            opened = self._open(step)
            if opened is None:
                return None
            value = opened
        if node.input is not None:
            choice = node.input.choice(value)
            if choice is not None:
                return choice.label
        return value

    def _open(self, step: Step) -> str | None:
        if self._opener is None or not step.sealed:
            return None
        try:
            return self._opener.open(step.sealed, step.event_id).decode()
        except (Unsealable, UnicodeDecodeError):
            return None

    def _open_json(self, step: Step) -> object:
        opened = self._open(step)
        if opened is None:
            return None
        try:
            return orjson.loads(opened)
        except orjson.JSONDecodeError:
            return None
