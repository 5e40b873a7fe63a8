"""Flow validation: structural (JSON Schema) then semantic (graph) checks.

Every problem becomes a :class:`~schemas.flow_errors.FlowError` naming the file,
the node and the field, so that an author can fix all of them in one pass
instead of meeting them one at a time. Semantic checks run only on structurally
valid documents.

This module holds the entry points: from a file, bytes, text or a parsed
document to a :class:`~schemas.flow.Flow` or every error. The steps live beside
it: the parsers (:mod:`schemas.flow_yaml`, :mod:`schemas.flow_json`) within
:mod:`schemas.flow_limits`, the JSON Schema (:mod:`schemas.flow_structure`),
the graph checks (:mod:`schemas.flow_graph`) and the texts of every locale
(:mod:`schemas.flow_locales`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import yaml

from schemas.flow import Flow, flow_from_document, parse_nodes
from schemas.flow_checks import variable_types
from schemas.flow_errors import FlowError, InvalidFlow
from schemas.flow_graph import semantic_errors
from schemas.flow_json import JsonRefused, parse_json
from schemas.flow_limits import MAX_FLOW_BYTES, MAX_FLOW_NODES
from schemas.flow_locales import locale_problems
from schemas.flow_structure import structural_errors
from schemas.flow_yaml import FlowRefused, load_yaml


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
            return parse_json(text), []
        return load_yaml(text), []
    except orjson.JSONDecodeError as exc:
        return None, [FlowError(filename, "", "", f"not valid JSON: {exc}")]
    except JsonRefused as exc:
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
