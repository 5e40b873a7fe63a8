"""What changed between two versions of a flow: nodes and edges added, removed, changed. Pure.

An edge is ``(from node, button id or "", to node)``: a button's candidates and a
message's ``next``. A node is changed when anything of it but its edges differs
(kind, text, buttons' labels, lead fields); edge changes are listed as edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.flow import Flow, Node

Edge = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class FlowDiff:
    nodes_added: tuple[str, ...]
    nodes_removed: tuple[str, ...]
    nodes_changed: tuple[str, ...]
    edges_added: tuple[Edge, ...]
    edges_removed: tuple[Edge, ...]
    start_changed: bool
    title_changed: bool

    @property
    def empty(self) -> bool:
        return not (
            self.nodes_added
            or self.nodes_removed
            or self.nodes_changed
            or self.edges_added
            or self.edges_removed
            or self.start_changed
            or self.title_changed
        )

    def as_json(self) -> dict[str, Any]:
        def edges(items: tuple[Edge, ...]) -> list[dict[str, str]]:
            return [{"from": a, "button": b, "to": c} for a, b, c in items]

        return {
            "nodes": {
                "added": list(self.nodes_added),
                "removed": list(self.nodes_removed),
                "changed": list(self.nodes_changed),
            },
            "edges": {"added": edges(self.edges_added), "removed": edges(self.edges_removed)},
            "start_changed": self.start_changed,
            "title_changed": self.title_changed,
        }


def edges_of(flow: Flow) -> set[Edge]:
    """Every (from, button or "", to) a node can lead along, conditional branches
    (flow format v2) included."""
    found: set[Edge] = set()
    for node in flow.nodes.values():
        if node.branches or node.next is not None:
            for target in node.successors():
                found.add((node.id, "", target))
        for button in node.buttons:
            for target in button.targets():
                found.add((node.id, button.id, target))
    return found


def _whens(node: Node) -> tuple[tuple[str | None, ...], ...]:
    """The conditions of a node's and its buttons' conditional ``next`` (their
    targets are edges)."""
    return (
        tuple(b.when for b in node.branches),
        *(tuple(b.when for b in button.branches) for button in node.buttons),
    )


def _content(flow: Flow, node_id: str) -> tuple[Any, ...]:
    """Everything of a node but its edges, in every locale of the flow (a change
    to one translation, or to a condition, changes the node)."""
    shown = []
    for locale in ("", *sorted(flow.translations)):
        node = flow.nodes[node_id] if not locale else flow.translations[locale].nodes[node_id]
        buttons = tuple((b.id, b.label) for b in node.buttons)
        shown.append((node.text, buttons, node.fields, node.input, node.image))
    node = flow.nodes[node_id]
    return (node.kind, node.store_as, _whens(node), tuple(shown))


def diff(old: Flow, new: Flow) -> FlowDiff:
    before, after = set(old.nodes), set(new.nodes)
    shared = before & after
    old_edges, new_edges = edges_of(old), edges_of(new)
    return FlowDiff(
        nodes_added=tuple(sorted(after - before)),
        nodes_removed=tuple(sorted(before - after)),
        nodes_changed=tuple(sorted(n for n in shared if _content(old, n) != _content(new, n))),
        edges_added=tuple(sorted(new_edges - old_edges)),
        edges_removed=tuple(sorted(old_edges - new_edges)),
        start_changed=old.start != new.start,
        title_changed=old.title != new.title,
    )
