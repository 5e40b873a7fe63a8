"""Reading a flow document's JSON strictly, within the same limits as YAML.

JSON has no anchors or tags, but a hostile file can still nest deeply, repeat
a key (which ``json`` would silently resolve to the last value) or spell an
integer of thousands of digits. :func:`parse_json` refuses those as a
:class:`JsonRefused` with the same wording the YAML loader uses
(:mod:`schemas.flow_yaml`), so an author meets one set of rules.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from schemas.flow_errors import clip
from schemas.flow_limits import MAX_FLOW_DEPTH, MAX_NUMBER_CHARS


class JsonRefused(ValueError):
    """A JSON document that parses but breaks a limit; its text is the problem."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise JsonRefused(f"duplicate key {clip(key)!r}")
        obj[key] = value
    return obj


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused(f"number longer than {MAX_NUMBER_CHARS} characters")
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


def parse_json(text: str) -> Any:
    """Strict JSON (orjson), nesting checked, then again with duplicate keys
    refused (stdlib json, safe to recurse once the depth is known to be small).
    Raises :class:`JsonRefused`, or orjson's ``JSONDecodeError`` for text that is
    not JSON at all."""
    if _deeper_than(orjson.loads(text), MAX_FLOW_DEPTH):
        raise JsonRefused(f"nested more than {MAX_FLOW_DEPTH} levels deep")
    return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
