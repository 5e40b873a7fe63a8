"""The e-mail and Slack renderings of a lead: complete, escaped, within Slack's limits.

A rendering that drops an answer loses part of the lead; one that does not
escape lets a visitor inject markup into the customer's inbox or channel; one
over Block Kit's limits is refused by Slack, so the lead is never shown.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from schemas.commands import VisitorContext
from services.delivery import render
from tests.support import leads


def texts(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def test_the_email_lists_every_contact_field_answer_consent_and_context() -> None:
    mail = render.email(leads.payload())
    assert mail.subject == "New lead from Test quiz"
    for part in (mail.text, mail.html):
        for value in ("ada@example.org", "+44 20 7946 0958", "Big", "Yes please", "Red"):
            assert value in part
        for question in ("How big is it?", "Anything else?", "Which colour (v1)?"):
            assert question in part
        assert "given at 2026-05-28T20:26:40.250Z" in part and "I agree" in part
        for ctx in ("mobile", "en-GB", "Europe/London", "news / email / spring"):
            assert ctx in part
        assert "https://leads.example.com/api/v1/conversations/c-0001" in part
    assert "Ada <b>Lovelace</b> & Co" in mail.text


def test_the_email_html_escapes_what_visitors_and_authors_wrote() -> None:
    contact = {**leads.CONTACT, "name": '<script>alert(1)</script>"'}
    lead = leads.snapshot(
        context=VisitorContext(referrer='https://x.example/"><img src=x onerror=alert(1)>')
    )
    html = render.email(leads.payload(lead, contact)).html
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in html
    assert "Ada &lt;b&gt;" not in html  # the contact was replaced, not merged


def test_the_subject_is_one_line_and_falls_back_to_the_flow_id() -> None:
    doc = leads.payload()
    doc["data"]["flow"]["title"] = "Solar\r\nBcc: all@example.com"
    assert render.title(doc) == "New lead from Solar Bcc: all@example.com"
    doc["data"]["flow"]["title"] = ""
    assert render.title(doc) == "New lead from quiz"
    doc["data"]["flow"]["title"] = "x" * 500
    assert len(render.title(doc)) == 150


def test_consent_not_given_says_so() -> None:
    mail = render.email(leads.payload(leads.snapshot(consent=False)))
    assert "Consent: not given" in mail.text


def test_slack_has_a_header_contact_fields_answers_context_and_the_transcript_button() -> None:
    message = render.slack(leads.payload())
    blocks = message["blocks"]
    assert message["text"] == "New lead from Test quiz"
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New lead from Test quiz", "emoji": False},
    }
    assert [b["type"] for b in blocks] == [
        "header", "section", "context", "divider", "section", "divider", "context", "actions",
    ]  # fmt: skip
    fields = " ".join(f["text"] for f in blocks[1]["fields"])
    assert "ada@example.org" in fields and "+44 20 7946 0958" in fields
    answers = blocks[4]["text"]["text"]
    assert answers == (
        "*How big is it?*\nBig\n\n*Anything else?*\nYes please\n\n*Which colour (v1)?*\nRed"
    )
    button = blocks[-1]["elements"][0]
    assert button["url"] == "https://leads.example.com/api/v1/conversations/c-0001"
    assert "mobile" in texts(blocks[6])


def test_slack_escapes_mrkdwn_control_characters() -> None:
    """A visitor must not be able to write <!channel> or a disguised link."""
    contact = {**leads.CONTACT, "name": "<!channel> <https://evil.example|bank> & co"}
    text = texts(render.slack(leads.payload(contact=contact)))
    assert "<!channel>" not in text and "<https://" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example|bank&gt; &amp; co" in text


def test_slack_stays_within_block_kit_limits_with_a_huge_lead() -> None:
    doc = leads.payload()
    many = [
        {"question_id": f"q{i}", "question": f"Question {i} " + "?" * 300,
         "answer_id": "a", "answer": "<" * 2000}
        for i in range(400)
    ]  # fmt: skip
    doc["data"]["answers"] = many
    doc["data"]["contact"] = {f"field{i}": "x" * 5000 for i in range(40)}
    blocks = render.slack(doc)["blocks"]
    assert len(blocks) <= render.MAX_BLOCKS
    for block in blocks:
        if "text" in block and block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= render.MAX_SECTION_TEXT
        for field in block.get("fields", []):
            assert len(field["text"]) <= render.MAX_FIELD_TEXT
        assert len(block.get("fields", [])) <= render.MAX_FIELDS
        assert len(block.get("elements", [])) <= 10
    assert "more answers (see the transcript)" in texts({"b": blocks})
    assert blocks[-1]["type"] == "actions"  # the transcript link is never crowded out


def test_slack_every_answer_of_a_long_quiz_is_there_when_it_fits() -> None:
    doc = leads.payload()
    doc["data"]["answers"] = [
        {"question_id": f"q{i}", "question": f"Q{i}", "answer_id": "a", "answer": f"A{i}"}
        for i in range(60)
    ]
    text = texts(render.slack(doc))
    assert all(f"*Q{i}*\\nA{i}" in text for i in range(60))


def test_renderings_are_deterministic() -> None:
    lead = replace(leads.snapshot(), conversation_id="c-0002")
    assert render.slack(leads.payload(lead)) == render.slack(leads.payload(lead))
    assert render.email(leads.payload(lead)) == render.email(leads.payload(lead))


def _cut_char_by_char(value: str, limit: int) -> str:
    """The definition mrkdwn_cut keeps: whole escapes, at most ``limit`` characters."""
    whole = render.mrkdwn(value)
    if len(whole) <= limit:
        return whole
    out = ""
    for char in value:
        escaped = render.mrkdwn(char)
        if len(out) + len(escaped) > limit - 1:
            break
        out += escaped
    return out + "…"


def test_mrkdwn_cut_never_splits_an_escape_at_any_cut_point() -> None:
    for text in ("a&b<c>d&&e", "&&&&&&", "<<<>>>", "plain text", "x&amp;y", ""):
        for limit in range(1, 3 * len(text) + 8):
            cut = render.mrkdwn_cut(text, limit)
            assert cut == _cut_char_by_char(text, limit), (text, limit)
            assert len(cut) <= limit
