"""The published JSON Schema of the lead payload (schemas/lead_delivery.v1.json)
describes exactly what :func:`services.delivery.payload.lead_payload` builds.

A receiver may validate what it gets against the schema; a payload change that
the schema does not follow (or a schema that refuses real payloads) breaks them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from schemas.commands import VisitorContext
from services.delivery.model import Answer
from services.delivery.payload import lead_payload, payload_bytes
from tests.support import leads
from tests.unit.flows import agree, quiz

DOCS = Path(__file__).resolve().parents[2] / "docs" / "delivery.md"


@cache
def validator() -> jsonschema.Draft202012Validator:
    text = files("schemas").joinpath("lead_delivery.v1.json").read_text("utf-8")
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(doc)
    ]


def assert_valid(doc: dict[str, Any]) -> None:
    assert errors(doc) == []
    assert errors(json.loads(payload_bytes(doc))) == []  # the bytes a webhook receives


def test_the_schema_is_packaged_with_id_title_and_a_description_per_field() -> None:
    """Regression: the schema ships in the ``schemas`` package (package-data
    ``*.json``, as flow.schema.json), and every property says what it is."""
    schema = validator().schema
    assert isinstance(schema, dict)
    assert schema["$id"].endswith("/lead_delivery.v1.json") and schema["title"]

    def undescribed(node: Any, where: str) -> list[str]:
        missing: list[str] = []
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{where}/{name}")
            for key, sub in node.items():
                if key not in ("if", "then", "else"):  # conditions restate described fields
                    missing += undescribed(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                missing += undescribed(sub, f"{where}/{i}")
        return missing

    assert undescribed(schema, "") == []


def test_a_payload_with_the_flow_is_valid() -> None:
    assert_valid(leads.payload())


def test_a_payload_without_the_flow_is_valid() -> None:
    """The worker does not know the flow version: ids stand in for texts, title ""."""
    doc = lead_payload(leads.snapshot(), None, leads.CONTACT, leads.PUBLIC_URL)
    assert doc["data"]["flow"]["title"] == "" and doc["data"]["consent"]["text"] is None
    assert_valid(doc)


def test_consent_not_given_is_valid_and_has_no_time() -> None:
    doc = lead_payload(leads.snapshot(consent=False), quiz(), {"name": "Ann"}, leads.PUBLIC_URL)
    assert doc["data"]["consent"] == {"given": False, "text": "I agree", "at": None}
    assert_valid(doc)


def test_several_answers_an_empty_context_and_no_contact_fields_are_valid() -> None:
    lead = leads.snapshot(
        context=VisitorContext(),
        answers=(
            Answer(node_id="size", button_id="big"),
            Answer(node_id="extra", button_id="yes"),
            Answer(node_id="colour", button_id="red"),
            Answer(node_id="gone", button_id="unknown-button"),
        ),
    )
    doc = lead_payload(lead, quiz(), {}, "http://127.0.0.1:8080/")
    assert len(doc["data"]["answers"]) == 4 and doc["data"]["contact"] == {}
    assert_valid(doc)


def test_a_consent_field_of_any_name_and_a_field_a_flow_invents_are_valid() -> None:
    """``contact`` is open: the flow's author names the form's fields."""
    lead = replace(leads.snapshot(), flow_id="agree", node_id="form", answers=())
    contact = {"email": "a@example.org", "company_size": "11-50", "agree": "true"}
    doc = lead_payload(lead, agree(), contact, leads.PUBLIC_URL)
    assert doc["data"]["contact"] == {"company_size": "11-50", "email": "a@example.org"}
    assert_valid(doc)


def test_the_example_in_the_docs_is_valid() -> None:
    """docs/delivery.md shows the payload: it must be one the schema accepts."""
    section = DOCS.read_text("utf-8").split("## The payload", 1)[1]
    match = re.search(r"```json\n(.*?)```", section, re.S)
    assert match is not None
    assert errors(json.loads(match.group(1))) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update(extra=1), ""),
        (lambda d: d["data"].update(email="a@example.org"), "data"),
        (lambda d: d["data"]["flow"].update(name="x"), "data/flow"),
        (lambda d: d["data"]["answers"][0].update(score=3), "data/answers/0"),
        (lambda d: d["data"]["context"]["utm"].update(term="x"), "data/context/utm"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(timestamp="2026-05-28 20:26:40"), "timestamp"),
        (lambda d: d["data"]["consent"].update(at=None), "data/consent/at"),
        (lambda d: d["data"]["contact"].update(age=42), "data/contact/age"),
        (lambda d: d["data"].pop("transcript_url"), "data"),
    ],
    ids=[
        "extra-top-level-field",
        "extra-data-field",
        "extra-flow-field",
        "extra-answer-field",
        "extra-utm-field",
        "other-version",
        "timestamp-not-iso",
        "consent-given-without-time",
        "contact-value-not-a-string",
        "missing-transcript-url",
    ],
)
def test_a_payload_that_is_not_the_shape_fails(change: Any, where: str) -> None:
    doc = json.loads(payload_bytes(leads.payload()))
    change(doc)
    found = errors(doc)
    assert found, "the schema accepted a payload lead_payload never builds"
    assert any(e.startswith(f"{where}:") for e in found), found
