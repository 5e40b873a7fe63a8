"""Flow validation: structural (JSON Schema) then semantic (graph) checks.

Every problem becomes a :class:`FlowError` naming the file, the node and the
field, so that an author can fix all of them in one pass instead of meeting
them one at a time. Semantic checks run only on structurally valid documents.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import orjson
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from schemas.flow import MAX_AUTO_ADVANCE, Flow, Node, NodeKind, flow_from_document, parse_nodes
from schemas.flow_checks import template_problems, v2_problems, variable_types
from schemas.flow_locales import locale_problems
from schemas.flow_timers import timer_problems
from schemas.locales import LOCALE_PATTERN

if TYPE_CHECKING:
    import jsonschema

MAX_LABEL_CHARS = 40
MAX_TEXT_CHARS = 1000
MAX_FLOW_BYTES = 256 * 1024
"""The largest flow document accepted, in bytes of UTF-8 (the examples are about 11 KB)."""
MAX_FLOW_DEPTH = 16
"""How deeply collections may nest (a valid flow needs 6: flow, nodes, node,
buttons, button, next)."""
MAX_FLOW_NODES = 1000
"""The most nodes one flow may have."""
MAX_NUMBER_CHARS = 32
"""The longest number literal accepted (no flow needs more than a few digits)."""


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


class FlowRefused(yaml.MarkedYAMLError):
    """A YAML document that parses but that flows never need and the loader
    refuses: anchors and aliases, duplicate keys, deep nesting, huge numbers."""


def _refuse(problem: str, node_or_event: Any) -> FlowRefused:
    return FlowRefused(problem=problem, problem_mark=getattr(node_or_event, "start_mark", None))


_PLAIN_TAGS = frozenset(
    {
        "!",
        *(
            f"tag:yaml.org,2002:{name}"
            for name in ("str", "int", "float", "bool", "null", "seq", "map")
        ),
    }
)
"""Explicit tags a flow may use: JSON's types. ``!!binary``, ``!!set``,
``!!timestamp``, ``!!omap``, ``!!python/...`` and local tags are refused."""


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _YamlBase(Composer, CParser, SafeConstructor, Resolver):
        """SafeLoader with libyaml's parser (about five times faster) under
        PyYAML's own composer, which :class:`_FlowYamlLoader` guards."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover (PyYAML's wheels ship libyaml)
    _YamlBase = yaml.SafeLoader  # type: ignore[assignment,misc]


class _FlowYamlLoader(_YamlBase):
    """The one YAML loader of flow documents, hardened against hostile files.

    * YAML 1.2 booleans: only true/false. YAML 1.1 would turn a button id such
      as ``yes``, ``no`` or ``on`` into a boolean behind the author's back.
      Likewise no implicit dates: ``text: 2025-01-31`` is text.
    * No anchors (``&a``), aliases (``*a``) or merge keys (``<<``): flows never
      need them, and aliases are what an expansion bomb is made of. No explicit
      tags but JSON's types (``!!str``, ``!!int``, ...): no ``!!binary``, ``!!set``.
    * Collections nest at most :data:`MAX_FLOW_DEPTH` deep (the composer recurses).
    * A key appears once per mapping, and keys are strings (flows are JSON data).
    * Number literals are at most :data:`MAX_NUMBER_CHARS` characters (Python
      refuses, slowly, to convert integers of thousands of digits).
    * Strings are valid Unicode (no unpaired surrogate from a ``\\ud800`` escape).

    Nothing here recurses deeper than the nesting limit, and the document is at
    most :data:`MAX_FLOW_BYTES` long before it gets here (:func:`parse_document`).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _refuse("YAML anchors and aliases are not supported in flows", event)
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _PLAIN_TAGS:
            raise _refuse(f"YAML tag {_clip(tag)!r} is not supported in flows", event)
        self._depth += 1
        try:
            if self._depth > MAX_FLOW_DEPTH:
                raise _refuse(f"nested more than {MAX_FLOW_DEPTH} levels deep", event)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)  # raises its own error
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _refuse("YAML merge keys (<<) are not supported in flows", key_node)
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise _refuse(f"keys must be strings, not {type(key).__name__}", key_node)
            if key in mapping:
                raise _refuse(f"duplicate key {_clip(key)!r}", key_node)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # a constructor choking on a value, e.g. `!!float abc`
            raise _refuse(f"cannot read this value ({_clip(str(exc))})", node) from None

    def construct_yaml_int(self, node: Any) -> int:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise _refuse(f"number longer than {MAX_NUMBER_CHARS} characters", node)
        value: int = super().construct_yaml_int(node)
        return value

    def construct_yaml_float(self, node: Any) -> float:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise _refuse(f"number longer than {MAX_NUMBER_CHARS} characters", node)
        value: float = super().construct_yaml_float(node)
        return value

    def construct_yaml_str(self, node: Any) -> str:
        value: str = super().construct_yaml_str(node)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "a string holds an unpaired surrogate (a \\ud800-style escape)"
            raise _refuse(problem, node) from None
        return value


_FlowYamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}
_FlowYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
for _tag, _construct in (
    ("tag:yaml.org,2002:int", _FlowYamlLoader.construct_yaml_int),
    ("tag:yaml.org,2002:float", _FlowYamlLoader.construct_yaml_float),
    ("tag:yaml.org,2002:str", _FlowYamlLoader.construct_yaml_str),
):
    _FlowYamlLoader.add_constructor(_tag, _construct)  # type: ignore[type-var]


def _load_yaml(text: str) -> Any:
    loader = _FlowYamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cache
def flow_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the flow format."""
    text = (Path(__file__).parent / "flow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """The schema with every ``#/$defs/...`` reference replaced by its definition
    (the flow schema has no recursive ones): the same checks, without a reference
    lookup per button, which halves validation time on large flows."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline_refs(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(value, defs) for value in node]
    return node


@cache
def _validator() -> jsonschema.Draft202012Validator:
    """jsonschema, imported only to word an invalid document's errors (its import
    costs 60-80 ms, which a process that only meets valid flows never pays)."""
    import jsonschema

    schema = flow_json_schema()
    return jsonschema.Draft202012Validator(_inline_refs(schema, schema.get("$defs", {})))


@cache
def _fast_validator() -> jsonschema_rs.Draft202012Validator:
    """The same schema in jsonschema-rs: about 100 times faster than jsonschema
    (0.06 ms against 8 ms for an example flow), so a valid document, the common
    case (every publish, every studio preview, every start-up seed), never pays
    for the Python validator, which only words the errors of an invalid one."""
    return jsonschema_rs.Draft202012Validator(flow_json_schema())


class _JsonRefused(ValueError):
    pass


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _JsonRefused(f"duplicate key {_clip(key)!r}")
        obj[key] = value
    return obj


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _JsonRefused(f"number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether collections nest more than ``limit`` deep (iteratively: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def _parse_json(text: str) -> Any:
    """Strict JSON (orjson), nesting checked, then again with duplicate keys
    refused (stdlib json, safe to recurse once the depth is known to be small)."""
    if _deeper_than(orjson.loads(text), MAX_FLOW_DEPTH):
        raise _JsonRefused(f"nested more than {MAX_FLOW_DEPTH} levels deep")
    return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)


def _too_large(size: int, filename: str) -> FlowError:
    return FlowError(
        filename,
        "",
        "",
        f"the document is {size} bytes; a flow may have at most {MAX_FLOW_BYTES} bytes",
    )


def parse_document(text: str, filename: str) -> tuple[Any, list[FlowError]]:
    """Parse YAML or JSON text (chosen by the file's suffix), within the limits:
    :data:`MAX_FLOW_BYTES`, :data:`MAX_FLOW_DEPTH`, no YAML anchors or aliases,
    no duplicate keys, :data:`MAX_NUMBER_CHARS`. Every refusal is a FlowError."""
    if len(text) * 4 > MAX_FLOW_BYTES:  # else it fits whatever its characters
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_FLOW_BYTES:
            return None, [_too_large(size, filename)]
    try:
        if filename.endswith(".json"):
            return _parse_json(text), []
        return _load_yaml(text), []
    except orjson.JSONDecodeError as exc:
        return None, [FlowError(filename, "", "", f"not valid JSON: {exc}")]
    except _JsonRefused as exc:
        return None, [FlowError(filename, "", "", str(exc))]
    except FlowRefused as exc:
        return None, [FlowError(filename, "", "", _yaml_reason(exc))]
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


def _branch_types(schema: Any) -> set[str]:
    """The JSON types a ``oneOf`` branch is for (``type``, or its ``allOf``'s)."""
    if not isinstance(schema, dict):
        return set()
    kind = schema.get("type")
    types = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    for part in schema.get("allOf", ()):
        types |= _branch_types(part)
    return types


def _best_of_one_of(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error of the ``oneOf`` branch for mappings when the instance is one (a
    text given per locale is reported as a mapping, not as a non-string), else
    jsonschema's best match."""
    from jsonschema.exceptions import best_match  # _validator imported jsonschema

    if not isinstance(err.instance, dict):
        return best_match(err.context or ()) or err
    branches = err.validator_value if isinstance(err.validator_value, list) else []
    meant = [
        sub
        for sub in err.context or ()
        if sub.relative_schema_path
        and isinstance(sub.relative_schema_path[0], int)
        and sub.relative_schema_path[0] < len(branches)
        and "object" in _branch_types(branches[sub.relative_schema_path[0]])
    ]
    return best_match(meant or err.context or ()) or err


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "pattern" and err.validator_value == LOCALE_PATTERN:
        return f"{_clip(repr(err.instance))} is not a locale tag like en, de or de-CH"
    return _clip(err.message, 300)


def structural_errors(doc: Any, filename: str) -> list[FlowError]:
    """Every JSON Schema error of the document. A document is structurally valid
    only when both validators say so: where their regular expressions differ (a
    ``$`` before a final newline, what ``\\s`` covers) the stricter one wins, and
    an error only jsonschema-rs sees is worded by it."""
    if _fast_validator().is_valid(doc):
        return []
    errors = _worded_errors(doc, filename)
    if not errors:
        errors = [_fast_error(doc, filename, err) for err in _fast_validator().iter_errors(doc)]
    return errors


def _fast_error(doc: Any, filename: str, err: jsonschema_rs.ValidationError) -> FlowError:
    path = list(err.instance_path)
    node = _clip(_node_id_at(doc, path))
    return FlowError(filename, node, _clip(_field_path(path)), _clip(err.message, 300))


def _worded_errors(doc: Any, filename: str) -> list[FlowError]:
    errors = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path))):
        if err.validator == "oneOf" and err.context:
            err = _best_of_one_of(err)
        path = list(err.absolute_path)
        named = _named_property(err)
        if named is not None:
            path.append(named)
        node = _clip(_node_id_at(doc, path))
        errors.append(FlowError(filename, node, _clip(_field_path(path)), _message(err)))
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
    on a cycle of messages) or through more messages in a row than the runtime allows.

    Linear: a message node has one successor, so each run of messages is walked
    once and every node on it gets its run length (or the cycle mark) on the way
    back. A node leading into a cycle is not reported; the cycle's own nodes are."""
    run: dict[str, int] = {}  # message node id -> messages in a row from it (itself included)
    cycle, into_cycle = -1, -2
    for node in nodes.values():
        if node.kind is not NodeKind.MESSAGE or node.id in run:
            continue
        path: list[str] = []
        on_path: dict[str, int] = {}
        current: Node | None = node
        tail = 0
        while current is not None and current.kind is NodeKind.MESSAGE:
            if current.id in run:
                tail = run[current.id]
                break
            if current.id in on_path:  # a new cycle: its nodes from where it closes
                for member in path[on_path[current.id] :]:
                    run[member] = cycle
                del path[on_path[current.id] :]
                tail = cycle
                break
            on_path[current.id] = len(path)
            path.append(current.id)
            current = nodes.get(current.next or "")
        for member in reversed(path):
            tail = into_cycle if tail < 0 else tail + 1
            run[member] = tail
    for node in nodes.values():
        length = run.get(node.id, 0)
        if length == cycle:
            yield node.id, "message nodes form a cycle that never waits"
        elif length > MAX_AUTO_ADVANCE - 1:
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
        for candidates in [b.to for b in button.branches] or [button.next]:
            for dup in _duplicates(candidates):
                message = f"candidate {dup!r} is listed twice"
                yield FlowError(file, node.id, f"{where}.next", message)
        for target in button.targets():
            if target not in known:
                yield FlowError(file, node.id, f"{where}.next", f"unknown next node {target!r}")
    if node.branches:
        for target in node.successors():
            if target not in known:
                yield FlowError(file, node.id, "next", f"unknown next node {target!r}")
    elif node.next is not None and node.next not in known:
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
        nudge = flow.timers.idle.to if flow.timers.idle is not None else ""
        if nudge in known:  # the idle nudge's node is reached from any waiting node
            reachable |= _reachable(nudge, flow.nodes)
        for node_id in flow.nodes:
            if node_id not in reachable:
                errors.append(FlowError(file, node_id, "", "unreachable from the start node"))
    finishing = _can_finish(flow.nodes)
    for node_id in flow.nodes:
        if node_id not in finishing:
            errors.append(FlowError(file, node_id, "", "no end node is reachable from here"))
    for node_id, problem in _message_runs(flow.nodes):
        errors.append(FlowError(file, node_id, "next", problem))
    for node_id, where, problem in v2_problems(flow, list(all_nodes)):
        errors.append(FlowError(file, node_id, where, problem))
    for where, problem in timer_problems(flow.timers, flow.nodes):
        errors.append(FlowError(file, "", where, problem))
    errors.extend(_nudge_errors(flow, file))
    return errors


def _nudge_errors(flow: Flow, file: str) -> list[FlowError]:
    """The idle nudge's message is a text like any other: its templates and links,
    in every locale (each distinct problem once)."""
    types = variable_types(flow)
    problems: dict[str, None] = {}
    for translation in (flow, *flow.translations.values()):
        idle = translation.timers.idle
        if idle is not None and idle.message:
            problems.update(dict.fromkeys(template_problems(idle.message, types, markdown=True)))
    return [FlowError(file, "", "timers.idle.message", problem) for problem in problems]


def validate_document(doc: Any, filename: str) -> tuple[Flow | None, list[FlowError]]:
    """Validate a parsed document; the flow is returned only if there are no errors."""
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if isinstance(nodes, list) and len(nodes) > MAX_FLOW_NODES:
        message = f"{len(nodes)} nodes; a flow may have at most {MAX_FLOW_NODES}"
        return None, [FlowError(filename, "", "nodes", message)]
    errors = structural_errors(doc, filename)
    if errors:
        return None, errors
    flow = flow_from_document(doc)
    errors = semantic_errors(flow, parse_nodes(doc), filename)
    problems = locale_problems(doc, variable_types(flow))
    errors.extend(FlowError(filename, node, where, problem) for node, where, problem in problems)
    return (None, errors) if errors else (flow, [])


def validate_text(text: str, filename: str) -> tuple[Flow | None, list[FlowError]]:
    doc, errors = parse_document(text, filename)
    if errors:
        return None, errors
    return validate_document(doc, filename)


def validate_bytes(data: bytes, filename: str) -> tuple[Flow | None, list[FlowError]]:
    """Validate a document read from a file or received over the network: the
    size is checked before anything else, then it must be UTF-8."""
    _, flow, errors = checked_document(data, filename)
    return flow, errors


def checked_document(data: bytes, filename: str) -> tuple[Any, Flow | None, list[FlowError]]:
    """:func:`validate_bytes`, with the parsed document too (what the flow
    registry stores); the document is None unless the flow is valid."""
    if len(data) > MAX_FLOW_BYTES:
        return None, None, [_too_large(len(data), filename)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, None, [FlowError(filename, "", "", f"cannot read file: not UTF-8 ({exc})")]
    doc, errors = parse_document(text, filename)
    if errors:
        return None, None, errors
    flow, errors = validate_document(doc, filename)
    return (doc, flow, []) if flow is not None else (None, None, errors)


def load_flow(path: Path) -> Flow:
    """Read and validate one flow file; raises :class:`InvalidFlow` with every error.
    Never reads more than one byte over :data:`MAX_FLOW_BYTES`."""
    return load_flow_document(path)[1]


def load_flow_document(path: Path) -> tuple[dict[str, Any], Flow]:
    """:func:`load_flow`, with the file's parsed document (what the registry publishes)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FLOW_BYTES + 1)
            size = max(len(data), os.fstat(file.fileno()).st_size)
    except OSError as exc:
        raise InvalidFlow([FlowError(str(path), "", "", f"cannot read file: {exc}")]) from exc
    if len(data) > MAX_FLOW_BYTES:
        raise InvalidFlow([_too_large(size, str(path))])
    doc, flow, errors = checked_document(data, str(path))
    if flow is None:
        raise InvalidFlow(errors)
    return doc, flow
