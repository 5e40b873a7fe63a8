"""What the delivery worker keeps: one :class:`Delivery` per (lead, destination).

A delivery holds a :class:`LeadSnapshot`, everything the payload needs except
the contact details, which stay sealed with the conversation's key (the very
blob of the ``LeadCaptured`` event). They are opened only in the worker's
memory, just before a send; a lead whose key was erased is never sent.

The rest of the payload's inputs that could change after the capture (the
public URL of the transcript link, the flow's texts as this process knows
them) are fixed in a :class:`Frame` when the delivery is created, so every
attempt, across restarts and workers, sends the same bytes under the same
``webhook-id``. A frame holds no personal data.

Records are frozen and versioned like every persisted message
(:func:`encode_delivery` / :func:`decode_delivery`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from schemas.codec import MessageError, UnsupportedVersion, from_mapping
from schemas.commands import VisitorContext

Status = Literal["pending", "delivered", "dead", "erased"]
STATUSES: tuple[Status, ...] = ("pending", "delivered", "dead", "erased")
Outcome = Literal["delivered", "retry", "gone", "erased", "deferred"]
DELIVERY_VERSION = 1
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    node_id: str
    button_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadSnapshot:
    """The lead as captured: no personal data in clear (``sealed`` is the event's blob)."""

    event_id: str
    conversation_id: str
    site_id: str
    flow_id: str
    flow_version: int
    node_id: str
    captured_at: float
    started_at: float
    consent: bool
    fields_present: tuple[str, ...]
    sealed: str
    context: VisitorContext = field(default_factory=VisitorContext)
    answers: tuple[Answer, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    """An answer as the visitor saw it: the question's text and the button's label."""

    question: str
    answer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """The payload's non-personal inputs, fixed when the delivery is created
    (:func:`services.delivery.payload.frame`); ``labels`` follow the lead's answers."""

    transcript_url: str
    flow_title: str
    consent_text: str | None
    consent_fields: tuple[str, ...]  # the form's consent fields: not contact details
    labels: tuple[Label, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try: when, how long, what came back (never the payload or a secret)."""

    at: float
    seconds: float
    outcome: Outcome
    status_code: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    id: str  # "<event id>:<destination name>": one per lead and destination
    site_id: str
    destination: str
    kind: str  # webhook, email, slack
    lead: LeadSnapshot
    created_at: float
    status: Status = "pending"
    next_at: float = 0.0  # when a pending delivery is due
    attempts: tuple[Attempt, ...] = ()
    delivered_at: float | None = None
    reason: str = ""  # why it is dead or erased
    replays: int = 0  # times an operator asked to send it again
    series_at: float = 0.0  # the current series of tries began (capture, or an operator's retry)
    frame: Frame | None = None  # None: stored before frames; framed at send time, as then

    @property
    def conversation_id(self) -> str:
        return self.lead.conversation_id


def delivery_id(event_id: str, destination: str) -> str:
    return f"{event_id}:{destination}"


def message_id(delivery: Delivery) -> str:
    """The id receivers deduplicate by (``webhook-id``, the e-mail's Message-ID):
    the lead's event id, the same on every retry; an operator's replay is a new
    message (``<event id>.replay-<n>``), so a receiver that remembers the id
    still takes it. The body's ``lead_id`` names the lead either way."""
    lead = delivery.lead.event_id
    return lead if delivery.replays == 0 else f"{lead}.replay-{delivery.replays}"


def encode_delivery(delivery: Delivery) -> bytes:
    return orjson.dumps({"v": DELIVERY_VERSION, "delivery": delivery})


def decode_delivery(data: bytes | str) -> Delivery:
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"delivery: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("v") != DELIVERY_VERSION:
        version = obj.get("v") if isinstance(obj, dict) else None
        raise UnsupportedVersion(f"delivery record version {version!r} is not supported")
    return from_mapping(Delivery, obj.get("delivery"), "delivery")
