"""The flow graph: frozen types for a quiz bot's directed graph of messages.

A flow is authored as YAML or JSON (see ``flow.schema.json`` and docs/flows.md)
and parsed into these types only after structural and semantic validation
passed (:mod:`schemas.flow_validation`). Everything here is immutable so that
one parsed flow can be shared by every conversation and every worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_AUTO_ADVANCE = 64
"""How many nodes one command may enter: message nodes auto-advance, so a run
of messages longer than this is refused by validation (and by the decider)."""


class NodeKind(StrEnum):
    MESSAGE = "message"
    QUESTION = "question"
    LEAD_FORM = "lead_form"
    END = "end"


class FieldType(StrEnum):
    TEXT = "text"
    EMAIL = "email"
    PHONE = "phone"
    CONSENT = "consent"


@dataclass(frozen=True, slots=True)
class Button:
    """A visitor's answer. More than one candidate makes it a decision point.

    The first candidate is the flow's *default edge*: the one a holdout group
    or a kill switch falls back to.
    """

    id: str
    label: str
    next: tuple[str, ...]

    @property
    def is_decision_point(self) -> bool:
        return len(self.next) > 1


@dataclass(frozen=True, slots=True)
class LeadField:
    name: str
    type: FieldType
    label: str
    required: bool


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: NodeKind
    text: str
    buttons: tuple[Button, ...] = ()
    fields: tuple[LeadField, ...] = ()
    next: str | None = None

    def button(self, button_id: str) -> Button | None:
        for button in self.buttons:
            if button.id == button_id:
                return button
        return None

    def successors(self) -> tuple[str, ...]:
        """Every node this node can lead to, in authoring order."""
        if self.next is not None:
            return (self.next,)
        return tuple(target for button in self.buttons for target in button.next)


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    version: int
    start: str
    nodes: Mapping[str, Node] = field(hash=False)
    title: str = ""

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    @property
    def key(self) -> str:
        """``id@version``: how events and snapshots name one version of a flow."""
        return f"{self.id}@{self.version}"

    def decision_points(self) -> list[tuple[str, str]]:
        return [
            (node.id, button.id)
            for node in self.nodes.values()
            for button in node.buttons
            if button.is_decision_point
        ]


def _as_targets(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def parse_node(raw: Mapping[str, Any]) -> Node:
    buttons = tuple(
        Button(id=b["id"], label=b["label"], next=_as_targets(b["next"]))
        for b in raw.get("buttons", ())
    )
    fields = tuple(
        LeadField(
            name=f["name"],
            type=FieldType(f.get("type", "text")),
            label=f.get("label", f["name"]),
            required=bool(f.get("required", False)),
        )
        for f in raw.get("fields", ())
    )
    return Node(
        id=raw["id"],
        kind=NodeKind(raw["kind"]),
        text=raw.get("text", ""),
        buttons=buttons,
        fields=fields,
        next=raw.get("next"),
    )


def flow_from_document(doc: Mapping[str, Any]) -> Flow:
    """Build a :class:`Flow` from a document that already passed validation."""
    nodes = {node.id: node for node in (parse_node(raw) for raw in doc["nodes"])}
    return Flow(
        id=doc["id"],
        version=int(doc["version"]),
        start=doc["start"],
        nodes=nodes,
        title=doc.get("title", ""),
    )
