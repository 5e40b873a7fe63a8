"""The instant opening: a flow's first reply, built before any visitor asks (pure).

A conversation's first reply (its *opening*: the messages up to and including the
first question, lead form, free-text question or end) is the same for every visitor
of one flow version and language, unless it reads the visitor. So the gateway serves
it as a cacheable document (gateway.opening_http) that the widget shows before its
WebSocket is open, then reconciles with the server's ``session`` (docs/protocol.md,
*The instant opening*).

It is built by running the real decider on a synthetic start (no clock, no I/O, no
key, no policy), so its messages are byte for byte the ``message`` frames' bodies the
server will send for that start: the same ``seq`` (``ConversationStarted`` is event
1, then one ``NodeEntered`` per node entered), the same texts in the same locale
(:meth:`Flow.for_locale`), the same JSON (:func:`schemas.frames.message_frame`).

It is *not instant* (``instant: false``; the widget waits for the socket as before)
when the opening reads the visitor: a condition of a message node on the way, or a
template in the text or a button label of a node shown, that names a ``context.*``
variable (device, referrer, UTM fields, locale, time zone), or a branch on the way
that is a decision point (the policy would choose per visitor). Answers cannot be
read yet (there are none before the first question), so templates naming them show
their fallbacks for everyone, and conditions on them decide the same for everyone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from schemas.commands import StartConversation, VisitorContext
from schemas.events import NodeEntered
from schemas.expression_parser import parse_expression
from schemas.expression_tree import Var, variables
from schemas.flow import Flow, Node, NodeKind
from schemas.frames import message_frame
from schemas.locales import pick_locale
from schemas.templates import placeholders
from services.conversation.decider import decide
from services.conversation.sealing import NoSealer
from services.conversation.state import ConversationState
from services.policy_port import DecisionPoint, EdgeChoice

OPENING_FORMAT = 1
DIGEST_CHARS = 16  # 64 bits of SHA-256 in the document's name, like the widget's
READS_CONTEXT = "reads_context"
DECISION_POINT = "decision_point"
UNSUPPORTED = "unsupported"


class _NoPolicy:
    """A start never asks the policy (decision points follow a press); if it did,
    the opening would depend on the visitor: refuse loudly."""

    def choose(self, point: DecisionPoint) -> EdgeChoice:
        raise LookupError("an opening never reaches a decision point")


@dataclass(frozen=True, slots=True)
class Opening:
    """One flow version's opening in one of its locales. ``body`` is the JSON
    document served (``digest`` names it); when ``instant`` is false, ``reason``
    says why and there are no messages."""

    flow_id: str
    version: int
    locale: str  # the flow's declared locale ("" for a flow without locales)
    instant: bool
    reason: str
    body: bytes
    digest: str

    @property
    def name(self) -> str:
        """The content-addressed file name: ``<version>.<digest>.json``."""
        return f"{self.version}.{self.digest}.json"


def opening_locale(flow: Flow, visitor_locale: str) -> str:
    """The flow's declared locale a visitor of ``visitor_locale`` gets ("" without
    locales): the one whose texts the server will reply in."""
    return pick_locale(flow.locales, visitor_locale)


def build_opening(flow: Flow, locale: str = "") -> Opening:
    """The opening of ``flow`` for visitors whose start context's locale picks
    ``locale`` (one of ``flow.locales``, or "")."""
    cid = "opening"
    start = StartConversation(
        conversation_id=cid,
        seq=1,
        at=0.0,
        flow_id=flow.id,
        site_id="",
        context=VisitorContext(locale=locale or "en"),
    )
    try:
        decision = decide(ConversationState(cid), start, flow, _NoPolicy(), NoSealer())
    except (LookupError, ValueError):
        return _not_instant(flow, locale, UNSUPPORTED)
    entered = [e.node_id for e in decision.events if isinstance(e, NodeEntered)]
    reason = visitor_dependence(flow, entered)
    if reason or decision.reply.error is not None:
        return _not_instant(flow, locale, reason or UNSUPPORTED)
    reply = decision.reply
    messages = [orjson.loads(message_frame(m, reply.ack))["message"] for m in reply.messages]
    return _document(
        flow,
        locale,
        {"instant": True, "ack": reply.ack, "messages": messages},
    )


def visitor_dependence(flow: Flow, entered: list[str]) -> str:
    """Why the opening through ``entered`` (node ids, in order) depends on the
    visitor, or "": a context variable read on the way, or a decision point."""
    for index, node_id in enumerate(entered):
        last = index == len(entered) - 1
        for translation in (flow, *flow.translations.values()):
            node = translation.node(node_id)
            if any(var.scope == "context" for var in _template_vars(node)):
                return READS_CONTEXT
        node = flow.node(node_id)
        if last or node.kind is not NodeKind.MESSAGE:
            continue  # the question's own branches are taken after the answer
        for branch in node.branches:
            if len(branch.to) > 1:
                return DECISION_POINT
            if branch.when is not None and any(
                var.scope == "context" for var in variables(parse_expression(branch.when))
            ):
                return READS_CONTEXT
    return ""


def _template_vars(node: Node) -> Iterator[Var]:
    for text in (node.text, *(button.label for button in node.buttons)):
        for placeholder in placeholders(text):
            yield placeholder.var


def _not_instant(flow: Flow, locale: str, reason: str) -> Opening:
    return _document(flow, locale, {"instant": False, "reason": reason})


def _document(flow: Flow, locale: str, fields: dict[str, object]) -> Opening:
    doc = {"v": OPENING_FORMAT, "flow": flow.id, "version": flow.version, "locale": locale}
    body = orjson.dumps({**doc, **fields})
    return Opening(
        flow_id=flow.id,
        version=flow.version,
        locale=locale,
        instant=bool(fields["instant"]),
        reason=str(fields.get("reason", "")),
        body=body,
        digest=hashlib.sha256(body).hexdigest()[:DIGEST_CHARS],
    )


def build_openings(flow: Flow) -> dict[str, Opening]:
    """The opening in each of the flow's locales (one, "", without locales)."""
    return {locale: build_opening(flow, locale) for locale in flow.locales or ("",)}
