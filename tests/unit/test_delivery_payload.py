"""The lead payload: complete, labelled from the flow, and the same bytes every time.

The same bytes matter: a retry under one ``webhook-id`` must carry the body the
receiver may already have stored.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from services.delivery.payload import _label, lead_payload, payload_bytes, transcript_url
from tests.support import leads
from tests.unit.flows import agree
from tests.unit.flows_v2 import roofer


def test_the_payload_fields() -> None:
    doc = leads.payload()
    data = doc["data"]
    assert (doc["type"], doc["version"], doc["timestamp"]) == (
        "lead.captured", 1, "2026-05-28T20:26:40.250Z",
    )  # fmt: skip
    assert data["lead_id"] == leads.snapshot().event_id
    assert data["flow"] == {"id": "quiz", "version": 1, "title": "Test quiz"}
    assert data["contact"] == {
        "email": "ada@example.org", "name": "Ada <b>Lovelace</b> & Co", "phone": "+44 20 7946 0958",
    }  # fmt: skip
    assert data["answers"][0] == {
        "question_id": "size", "question": "How big is it?", "answer_id": "big", "answer": "Big",
    }  # fmt: skip
    assert data["context"]["utm"] == {"source": "news", "medium": "email", "campaign": "spring"}
    assert data["transcript_url"] == "https://leads.example.com/api/v1/conversations/c-0001"


def test_the_same_lead_gives_the_same_bytes() -> None:
    contact = dict(reversed(list(leads.CONTACT.items())))
    assert payload_bytes(leads.payload()) == payload_bytes(leads.payload(contact=contact))


def test_consent_text_comes_from_the_forms_consent_field_whatever_its_name() -> None:
    lead = replace(leads.snapshot(), flow_id="agree", node_id="form", answers=())
    doc = lead_payload(lead, agree(), {"email": "a@example.org", "agree": "true"}, "https://x/")
    assert doc["data"]["consent"] == {"given": True, "text": "I agree", "at": doc["timestamp"]}
    assert doc["data"]["contact"] == {"email": "a@example.org"}


def test_without_the_flow_ids_stand_in_for_texts() -> None:
    doc = lead_payload(leads.snapshot(consent=False), None, {}, "https://x/")
    assert doc["data"]["answers"][0]["question"] == "size"
    assert doc["data"]["answers"][0]["answer"] == "big"
    assert doc["data"]["consent"] == {"given": False, "text": None, "at": None}
    assert orjson.loads(payload_bytes(doc)) == doc
    assert transcript_url("https://x/", "c") == "https://x/api/v1/conversations/c"


def test_a_templated_question_is_labelled_with_its_fallbacks_never_a_value() -> None:
    label = _label(roofer(), "roof", "flat")
    assert label.question == "What kind of roof do you have, friend?"
    assert "{{" not in label.question and label.answer == "Flat"
