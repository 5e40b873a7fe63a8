"""The lead for people (pure): an e-mail and a Slack Block Kit message.

Both start from the payload document (:func:`services.delivery.payload.lead_payload`),
so they say what a webhook says: contact details, consent, every question with
its answer, the visitor context and the transcript link. Every value came from
a visitor or a flow author, so each is escaped for where it lands: HTML in the
e-mail's HTML part, Slack's ``&``/``<``/``>`` in mrkdwn (which also keeps a
visitor from writing ``<!channel>`` or a disguised link), and no line breaks in
the subject. Slack refuses a message over its limits (3000 characters per
section text, 10 fields per section, 50 blocks), so long values are cut and
surplus answers are summarised rather than the message lost.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_HEADER = 150
MAX_VALUE = 1000  # one contact value or answer, in Slack


@dataclass(frozen=True, slots=True)
class Email:
    subject: str
    text: str
    html: str


def _data(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    data = payload.get("data")
    return data if isinstance(data, Mapping) else {}


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def title(payload: Mapping[str, Any]) -> str:
    """``New lead from <flow title or id>``: one line, at most 150 characters."""
    flow = _data(payload).get("flow") or {}
    name = _one_line(flow.get("title") or flow.get("id") or "a flow")
    return _cut(f"New lead from {name}", MAX_HEADER)


def _consent(data: Mapping[str, Any]) -> str:
    consent = data.get("consent") or {}
    if not consent.get("given"):
        return "not given"
    text = consent.get("text")
    return f"given at {consent.get('at')}" + (f': "{text}"' if text else "")


def _context_lines(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    ctx = data.get("context") or {}
    utm = ctx.get("utm") or {}
    campaign = " / ".join(str(utm.get(k) or "-") for k in ("source", "medium", "campaign"))
    return [
        ("device", str(ctx.get("device", ""))),
        ("locale", f"{ctx.get('locale', '')}, time zone {ctx.get('time_zone', '')}"),
        ("referrer", str(ctx.get("referrer") or "-")),
        ("UTM source / medium / campaign", campaign),
    ]


def _answers(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(a.get("question", "")), str(a.get("answer", ""))) for a in data.get("answers", [])]


def _contact(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in (data.get("contact") or {}).items()]


def _ids(data: Mapping[str, Any]) -> str:
    flow = data.get("flow") or {}
    return (
        f"Lead {data.get('lead_id')} · site {data.get('site_id')} · flow {flow.get('id')}"
        f" v{flow.get('version')} · captured {data.get('captured_at')}"
    )


def email(payload: Mapping[str, Any]) -> Email:
    """The e-mail's subject, plain-text part and HTML part."""
    data = _data(payload)
    subject = title(payload)
    url = str(data.get("transcript_url", ""))
    text = [subject, "", "Contact"]
    text += [f"  {k}: {v}" for k, v in _contact(data)] or ["  (none)"]
    text += ["", f"Consent: {_consent(data)}", "", "Answers"]
    for question, answer in _answers(data):
        text += [f"  {question}", f"    {answer}"]
    text += ["", "Visitor"] + [f"  {k}: {v}" for k, v in _context_lines(data)]
    text += ["", f"Transcript: {url}", "", _ids(data), ""]

    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _contact(data))
    answers = "".join(f"<dt>{e(q)}</dt><dd>{e(a)}</dd>" for q, a in _answers(data))
    ctx = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _context_lines(data))
    link = (
        f'<p><a href="{e(url, quote=True)}">Open the transcript</a></p>'
        if url.startswith(("https://", "http://"))
        else ""
    )
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        f"<h1>{e(subject)}</h1>"
        f"<h2>Contact</h2><table>{rows}</table>"
        f"<p>Consent: {e(_consent(data))}</p>"
        f"<h2>Answers</h2><dl>{answers}</dl>"
        f"<h2>Visitor</h2><table>{ctx}</table>"
        f"{link}<p><small>{e(_ids(data))}</small></p></body></html>\n"
    )
    return Email(subject, "\n".join(text), body)


def mrkdwn(value: object) -> str:
    """Text safe in Slack mrkdwn: only ``&``, ``<`` and ``>`` are control characters."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_cut(value: object, limit: int) -> str:
    """``value`` escaped for mrkdwn and cut to ``limit`` characters without
    splitting an escape (a cut ``&amp;`` would show as ``&am``)."""
    escaped = mrkdwn(value)
    if len(escaped) <= limit:
        return escaped
    head = escaped[: limit - 1]
    amp = head.rfind("&", max(0, len(head) - len("&amp;") + 1))
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]  # the cut fell inside an escape: drop the whole of it
    return head + "…"


def _md(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(text, limit)}


def _answer_sections(answers: list[tuple[str, str]], budget: int) -> list[dict[str, Any]]:
    """Answers packed into sections of at most 3000 characters, at most ``budget``
    sections; what does not fit is counted in a last line."""
    items = [f"*{mrkdwn_cut(q, MAX_VALUE)}*\n{mrkdwn_cut(a, MAX_VALUE)}" for q, a in answers]
    sections: list[str] = []
    current = ""
    for n, item in enumerate(items):
        joined = f"{current}\n\n{item}" if current else item
        if len(joined) <= MAX_SECTION_TEXT - 80 or not current:
            current = joined
            continue
        if len(sections) + 1 >= budget:
            current += f"\n\n_… and {len(items) - n} more answers (see the transcript)_"
            break
        sections.append(current)
        current = item
    if current:
        sections.append(current)
    return [{"type": "section", "text": _md(s)} for s in sections]


def slack(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The incoming-webhook message: Block Kit within Slack's limits, and a fallback text."""
    data = _data(payload)
    head = title(payload)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head, "emoji": False}}
    ]
    fields = [
        _md(f"*{mrkdwn_cut(k, 100)}*\n{mrkdwn_cut(v, MAX_VALUE)}", MAX_FIELD_TEXT)
        for k, v in _contact(data)
    ]
    for i in range(0, min(len(fields), 3 * MAX_FIELDS), MAX_FIELDS):
        blocks.append({"type": "section", "fields": fields[i : i + MAX_FIELDS]})
    blocks.append(
        {"type": "context", "elements": [_md(f"Consent: {mrkdwn_cut(_consent(data), 1000)}")]}
    )
    blocks.append({"type": "divider"})
    tail: list[dict[str, Any]] = [
        {"type": "divider"},
        {
            "type": "context",
            "elements": [
                _md(f"*{mrkdwn(k)}*: {mrkdwn_cut(v, 300)}") for k, v in _context_lines(data)
            ]
            + [_md(mrkdwn(_ids(data)))],
        },
    ]
    url = str(data.get("transcript_url", ""))
    if url.startswith(("https://", "http://")) and len(url) <= 3000:
        tail.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open transcript"},
                        "url": url,
                        "action_id": "open_transcript",
                    }
                ],
            }
        )
    budget = MAX_BLOCKS - len(blocks) - len(tail)
    blocks += _answer_sections(_answers(data), budget)
    return {"text": head, "blocks": blocks + tail}
