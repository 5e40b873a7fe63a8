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

from schemas.flow import MAX_AUTO_ADVANCE, Flow, Node, NodeKind, flow_from_document, parse_node

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
    except orjson.JSONDecodeError as exc:
        return None, [FlowError(filename, "", "", f"not valid JSON: {exc}")]
    except yaml.YAMLError as exc:
        return None, [FlowError(filename, "", "", f"not valid YAML: {_yaml_reason(exc)}")]


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context or 'syntax error'}{where}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _node_id_at(doc: Any, path: Sequence[Any]) -> str:
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        nodes = doc.get("nodes") if isinstance(doc, dict) else None
        if isinstance(nodes, list) and path[1] < len(nodes):
            node = nodes[path[1]]
            node_id = node.get("id") if isinstance(node, dict) else None
            if isinstance(node_id, str) and node_id:
                return node_id
            return f"nodes[{path[1]}]"
    return ""


def _field_path(path: Sequence[Any]) -> str:
    rest = list(path[2:]) if len(path) >= 2 and path[0] == "nodes" else list(path)
    out = ""
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _named_property(err: jsonschema.ValidationError) -> str | None:
    """The property a ``required`` or ``additionalProperties`` error is about."""
    instance = err.instance if isinstance(err.instance, dict) else {}
    if err.validator == "required":
        required: list[str] = (
            list(err.validator_value) if isinstance(err.validator_value, list) else []
        )
        missing = [name for name in required if name not in instance]
        return str(missing[0]) if missing else None
    if err.validator == "additionalProperties" and isinstance(err.schema, dict):
        known = set(err.schema.get("properties", {}))
        extra = sorted(str(name) for name in instance if name not in known)
        return extra[0] if extra else None
    return None


def structural_errors(doc: Any, filename: str) -> list[FlowError]:
    errors = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path))):
        if err.validator == "oneOf" and err.context:
            err = jsonschema.exceptions.best_match(err.context) or err
        path = list(err.absolute_path)
        named = _named_property(err)
        if named is not None:
            path.append(named)
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


def _message_runs(nodes: Mapping[str, Node]) -> Iterator[tuple[str, str]]:
    """(node id, problem) for message nodes that would auto-advance forever (they lie
    on a cycle of messages) or through more messages in a row than the runtime allows."""
    for node in nodes.values():
        if node.kind is not NodeKind.MESSAGE:
            continue
        seen = {node.id}
        current = nodes.get(node.next or "")
        while current is not None and current.kind is NodeKind.MESSAGE:
            if current.id == node.id:
                yield node.id, "message nodes form a cycle that never waits"
                break
            if current.id in seen:
                break  # leads into a cycle; the cycle's own nodes are reported
            seen.add(current.id)
            current = nodes.get(current.next or "")
        else:
            if len(seen) > MAX_AUTO_ADVANCE - 1:
                yield (
                    node.id,
                    (
                        f"more than {MAX_AUTO_ADVANCE - 1} message nodes in a row; "
                        "put a question between them"
                    ),
                )


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
        if not lead_field.label.strip():
            yield FlowError(file, node.id, f"fields.{lead_field.name}.label", "label is empty")
        if len(lead_field.label) > MAX_TEXT_CHARS:
            yield FlowError(file, node.id, f"fields.{lead_field.name}.label", "label is too long")
    if not any(f.type in ("email", "phone") for f in node.fields):
        yield FlowError(
            file, node.id, "fields", "a lead form needs an email or a phone field to reach the lead"
        )


def semantic_errors(flow: Flow, all_nodes: Sequence[Node], file: str) -> list[FlowError]:
    """Graph checks. ``all_nodes`` lists every authored node, duplicates included,
    so that a node shadowed by a later one with the same id is still checked."""
    errors = [
        FlowError(file, dup, "id", f"duplicate node id {dup!r}")
        for dup in _duplicates(n.id for n in all_nodes)
    ]
    known = set(flow.nodes)
    if flow.start not in known:
        errors.append(FlowError(file, "", "start", f"unknown start node {flow.start!r}"))
    for node in all_nodes:
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
    for node_id, problem in _message_runs(flow.nodes):
        errors.append(FlowError(file, node_id, "next", problem))
    return errors


def validate_document(doc: Any, filename: str) -> tuple[Flow | None, list[FlowError]]:
    """Validate a parsed document; the flow is returned only if there are no errors."""
    errors = structural_errors(doc, filename)
    if errors:
        return None, errors
    flow = flow_from_document(doc)
    errors = semantic_errors(flow, [parse_node(raw) for raw in doc["nodes"]], filename)
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
