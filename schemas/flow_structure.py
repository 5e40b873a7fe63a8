"""The structural check of a flow document: its JSON Schema, ``flow.schema.json``.

Two engines validate the same schema. jsonschema-rs answers first, because a
valid document is the common case and it is about 100 times faster; only an
invalid document meets the Python ``jsonschema``, imported on first need,
whose errors carry what it takes to word them for an author (the node, the
field path, the property that is missing or unknown, the branch of a
``oneOf`` that was meant). Semantic checks (:mod:`schemas.flow_graph`) run only
on a document this module found no error in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from schemas.flow_errors import FlowError, clip
from schemas.locales import LOCALE_PATTERN

if TYPE_CHECKING:
    import jsonschema


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
        return f"{clip(repr(err.instance))} is not a locale tag like en, de or de-CH"
    return clip(err.message, 300)


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
    node = clip(_node_id_at(doc, path))
    return FlowError(filename, node, clip(_field_path(path)), clip(err.message, 300))


def _worded_errors(doc: Any, filename: str) -> list[FlowError]:
    errors = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path))):
        if err.validator == "oneOf" and err.context:
            err = _best_of_one_of(err)
        path = list(err.absolute_path)
        named = _named_property(err)
        if named is not None:
            path.append(named)
        node = clip(_node_id_at(doc, path))
        errors.append(FlowError(filename, node, clip(_field_path(path)), _message(err)))
    return errors
