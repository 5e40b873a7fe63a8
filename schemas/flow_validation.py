"""Flow validation: structural (JSON Schema) then semantic (graph) checks.

Every problem becomes a :class:`FlowError` naming the file, the node and the
field, so that an author can fix all of them in one pass instead of meeting
them one at a time. Semantic checks run only on structurally valid documents.
"""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml

from schemas.flow import Flow, Node, NodeKind, flow_from_document

MAX_LABEL_CHARS = 40
MAX_TEXT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class FlowError:
    file: str
    node: str
    field: str
    message: str

    def __str__(self) -> str:
        where = self.node or "(flow)"
        if self.field:
            where = f"{where}.{self.field}"
        return f"{self.file}: {where}: {self.message}"


class InvalidFlow(Exception):
    """A flow file failed validation; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[FlowError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class _FlowYamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 would turn a button id such
    as ``yes``, ``no`` or ``on`` into a boolean behind the author's back."""


_FlowYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_FlowYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@cache
def flow_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the flow format."""
    text = (Path(__file__).parent / "flow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(flow_json_schema())


def parse_document(text: str, filename: str) -> tuple[Any, list[FlowError]]:
    """Parse YAML or JSON text (chosen by the file's suffix)."""
    try:
        if filename.endswith(".json"):
            return orjson.loads(text), []
        return yaml.load(text, Loader=_FlowYamlLoader), []
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, [FlowError(filename, "", "", f"not valid YAML/JSON: {reason}")]


def _node_id_at(doc: Any, path: Sequence[Any]) -> str:
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        nodes = doc.get("nodes") if isinstance(doc, dict) else None
        if isinstance(nodes, list) and path[1] < len(nodes):
            node = nodes[path[1]]
            node_id = node.get("id") if isinstance(node, dict) else None
            if isinstance(node_id, str):
                return node_id
            return f"nodes[{path[1]}]"
    return ""


def _field_path(path: Sequence[Any]) -> str:
    rest = list(path[2:]) if len(path) >= 2 and path[0] == "nodes" else list(path)
    out = ""
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def structural_errors(doc: Any, filename: str) -> list[FlowError]:
    errors = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path))):
        path = list(err.absolute_path)
        errors.append(FlowError(filename, _node_id_at(doc, path), _field_path(path), err.message))
    return errors


def _duplicates(values: Iterable[str]) -> list[str]:
    return [value for value, count in Counter(values).items() if count > 1]


def _reachable(start: str, nodes: Mapping[str, Node]) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for target in nodes[queue.popleft()].successors():
            if target in nodes and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def _can_finish(nodes: Mapping[str, Node]) -> set[str]:
    """Nodes from which some ``end`` node is reachable (reverse BFS from the ends)."""
    predecessors: dict[str, set[str]] = {node_id: set() for node_id in nodes}
    for node in nodes.values():
        for target in node.successors():
            if target in predecessors:
                predecessors[target].add(node.id)
    done = {n.id for n in nodes.values() if n.kind is NodeKind.END}
    queue = deque(done)
    while queue:
        for pred in predecessors[queue.popleft()]:
            if pred not in done:
                done.add(pred)
                queue.append(pred)
    return done


def _message_cycles(nodes: Mapping[str, Node]) -> Iterator[str]:
    """Message nodes that auto-advance forever (a cycle made only of messages)."""
    for node in nodes.values():
        if node.kind is not NodeKind.MESSAGE:
            continue
        seen: set[str] = set()
        current: Node | None = node
        while current is not None and current.kind is NodeKind.MESSAGE:
            if current.id in seen:
                yield node.id
                break
            seen.add(current.id)
            current = nodes.get(current.next or "")


def _node_errors(node: Node, file: str, known: set[str]) -> Iterator[FlowError]:
    if not node.text.strip():
        yield FlowError(file, node.id, "text", "text is empty")
    elif len(node.text) > MAX_TEXT_CHARS:
        yield FlowError(file, node.id, "text", f"text is longer than {MAX_TEXT_CHARS} characters")
    for dup in _duplicates(b.id for b in node.buttons):
        yield FlowError(file, node.id, f"buttons.{dup}", f"duplicate button id {dup!r}")
    for button in node.buttons:
        where = f"buttons.{button.id}"
        if not button.label.strip():
            yield FlowError(file, node.id, f"{where}.label", "label is empty")
        elif len(button.label) > MAX_LABEL_CHARS:
            yield FlowError(
                file,
                node.id,
                f"{where}.label",
                f"label is {len(button.label)} characters, at most {MAX_LABEL_CHARS} fit a button",
            )
        for dup in _duplicates(button.next):
            yield FlowError(file, node.id, f"{where}.next", f"candidate {dup!r} is listed twice")
        for target in button.next:
            if target not in known:
                yield FlowError(file, node.id, f"{where}.next", f"unknown next node {target!r}")
    if node.next is not None and node.next not in known:
        yield FlowError(file, node.id, "next", f"unknown next node {node.next!r}")
    yield from _field_errors(node, file)


def _field_errors(node: Node, file: str) -> Iterator[FlowError]:
    if node.kind is not NodeKind.LEAD_FORM:
        return
    for dup in _duplicates(f.name for f in node.fields):
        yield FlowError(file, node.id, f"fields.{dup}", f"duplicate field {dup!r}")
    for lead_field in node.fields:
        if len(lead_field.label) > MAX_TEXT_CHARS:
            yield FlowError(file, node.id, f"fields.{lead_field.name}.label", "label is too long")
    if not any(f.type in ("email", "phone") for f in node.fields):
        yield FlowError(
            file, node.id, "fields", "a lead form needs an email or a phone field to reach the lead"
        )


def semantic_errors(flow: Flow, raw_ids: Sequence[str], file: str) -> list[FlowError]:
    errors = [
        FlowError(file, dup, "id", f"duplicate node id {dup!r}") for dup in _duplicates(raw_ids)
    ]
    known = set(flow.nodes)
    if flow.start not in known:
        errors.append(FlowError(file, "", "start", f"unknown start node {flow.start!r}"))
    for node in flow.nodes.values():
        errors.extend(_node_errors(node, file, known))
    if flow.start in known:
        reachable = _reachable(flow.start, flow.nodes)
        for node_id in flow.nodes:
            if node_id not in reachable:
                errors.append(FlowError(file, node_id, "", "unreachable from the start node"))
    finishing = _can_finish(flow.nodes)
    for node_id in flow.nodes:
        if node_id not in finishing:
            errors.append(FlowError(file, node_id, "", "no end node is reachable from here"))
    for node_id in _message_cycles(flow.nodes):
        errors.append(
            FlowError(file, node_id, "next", "message nodes form a cycle that never waits")
        )
    return errors


def validate_document(doc: Any, filename: str) -> tuple[Flow | None, list[FlowError]]:
    """Validate a parsed document; the flow is returned only if there are no errors."""
    errors = structural_errors(doc, filename)
    if errors:
        return None, errors
    flow = flow_from_document(doc)
    errors = semantic_errors(flow, [n["id"] for n in doc["nodes"]], filename)
    return (None, errors) if errors else (flow, [])


def validate_text(text: str, filename: str) -> tuple[Flow | None, list[FlowError]]:
    doc, errors = parse_document(text, filename)
    if errors:
        return None, errors
    return validate_document(doc, filename)


def load_flow(path: Path) -> Flow:
    """Read and validate one flow file; raises :class:`InvalidFlow` with every error."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFlow([FlowError(str(path), "", "", f"cannot read file: {exc}")]) from exc
    flow, errors = validate_text(text, str(path))
    if flow is None:
        raise InvalidFlow(errors)
    return flow
