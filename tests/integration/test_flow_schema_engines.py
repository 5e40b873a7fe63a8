"""The flow schema's two validators never disagree in the loose direction.

Flow validation asks jsonschema-rs first and trusts a "valid" from it, so that a
valid document never pays for the Python validator (schemas/flow_structure.py);
jsonschema only words the errors. That is safe exactly when jsonschema-rs is never
looser than jsonschema: no document the fast validator accepts may be refused by
jsonschema. This checks it on every example flow with each scalar, in turn,
replaced by hostile values (wrong types, bounds, control characters, newlines,
translations where a string was), and every patterned string with every
character of the Basic Multilingual Plane.

Where the engines' regular expressions differ (Python's ``$`` before a final
newline, which characters ``\\s`` covers), jsonschema-rs must be the stricter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import jsonschema_rs
import pytest

from schemas.flow_structure import flow_json_schema
from schemas.flow_validation import parse_document
from services.catalog import EXAMPLE_FLOWS_DIR

HOSTILE: tuple[Any, ...] = (
    "",
    " ",
    "x" * 2001,
    "A",
    "a\n",
    "a\x1c",
    "a\x85",
    "a\ufeff",
    "https://example.com/a\nb",
    -1,
    0,
    1.5,
    10**30,
    True,
    None,
    {},
    [],
    {"en": "x"},
    {"EN": "x"},
)

Path = tuple[Any, ...]


def scalar_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from scalar_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from scalar_paths(child, (*path, index))
    else:
        yield path


def replaced(doc: Any, path: Path, value: Any) -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced (only the spine is copied)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: replaced(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = replaced(doc[head], rest, value)
    return copy


def example_documents() -> list[tuple[str, Any]]:
    out = []
    for path in sorted(EXAMPLE_FLOWS_DIR.glob("*.yaml")):
        doc, errors = parse_document(path.read_text("utf-8"), path.name)
        assert not errors, errors
        out.append((path.name, doc))
    return out


@pytest.fixture(scope="module")
def engines() -> tuple[jsonschema_rs.Draft202012Validator, jsonschema.Draft202012Validator]:
    schema = flow_json_schema()
    return jsonschema_rs.Draft202012Validator(schema), jsonschema.Draft202012Validator(schema)


def test_jsonschema_rs_accepts_nothing_jsonschema_refuses_in_mutated_examples(
    engines: tuple[jsonschema_rs.Draft202012Validator, jsonschema.Draft202012Validator],
) -> None:
    fast, python = engines
    tried = accepted = checked = 0
    loose = []
    for name, doc in example_documents():
        assert fast.is_valid(doc) and python.is_valid(doc), name
        for number, path in enumerate(scalar_paths(doc)):
            for value in HOSTILE:
                mutated = replaced(doc, path, value)
                tried += 1
                if not fast.is_valid(mutated):
                    continue
                accepted += 1
                # A string accepted where any text is allowed (about 350 places per flow)
                # is checked at every 8th place: jsonschema takes 8 ms a document, and the
                # characters themselves are covered one by one by the test below.
                if isinstance(value, str) and number % 8:
                    continue
                checked += 1
                if not python.is_valid(mutated):
                    loose.append((name, path, value))
    assert not loose, loose[:10]
    # the mutations are not all refused for the same reason: some are valid values
    assert tried > 5_000 and 0 < accepted < tried and checked > 300


@pytest.mark.parametrize("where", ["identifier", "locale", "image_src"])
def test_patterned_strings_agree_or_jsonschema_rs_is_stricter_for_every_bmp_character(
    where: str,
) -> None:
    defs = flow_json_schema()["$defs"]
    pattern = (
        defs["image"]["properties"]["src"]["pattern"]
        if where == "image_src"
        else (defs[where]["pattern"])
    )
    schema = {"type": "string", "pattern": pattern}
    fast, python = jsonschema_rs.validator_for(schema), jsonschema.Draft202012Validator(schema)
    prefix = {"identifier": "ab", "locale": "de", "image_src": "https://a"}[where]
    loose = []
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # not encodable: the parsers refuse unpaired surrogates first
        for text in (prefix + chr(code), prefix + chr(code) + "b"):
            if fast.is_valid(text) and not python.is_valid(text):
                loose.append(hex(code))
    assert not loose, loose[:20]
