"""Preview sessions (issue 18): drafts in the registry, signed preview tokens, and
preview conversations kept out of read models, the policy's rewards and delivery.

Pure: the conversations run through the real ConversationService on the in-memory
fakes; each "kept out" test also runs the same conversation without the preview
mark and checks that it does count, so a test cannot pass by counting nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

import orjson
import pytest

from gateway.config import GatewaySettings
from gateway.connection import Connection, GatewayContext
from gateway.metrics import GatewayMetrics
from gateway.tokens import ResumeTokens
from policy.reward_counts import FlowKey
from policy.rewards import RewardLedger
from policy.uniform import UniformPolicy
from projector.plan import plan
from schemas.commands import Command, PressButton, StartConversation, SubmitLead, decode_command
from schemas.events import ConversationStarted, Event, decode_event
from schemas.flow_registry import (
    DRAFT_VERSIONS,
    FlowDrafted,
    content_hash,
    decode_record,
    draft_version,
    encode_record,
    record_key,
)
from schemas.flow_validation import parse_document, validate_document
from schemas.frames import StartFrame, parse_client_frame
from services.catalog import FlowCatalog
from services.conversation.service import ConversationService, InProcessCommandBus, flow_for
from services.conversation.state import ConversationState, fold
from services.delivery.config import Destination
from services.delivery.intake import leads_in, take_in
from services.delivery.model import Frame
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from services.preview_tokens import ANY_SITE, InvalidPreview, PreviewTokens
from services.registry.core import DraftCollision, Drafted, Registry, apply, plan_draft
from services.sites import DEV_ORIGINS, Site
from tests.unit.flows import QUIZ_YAML

T0 = 1_700_000_000.0
SECRET = b"s" * 32
_QUIZ, _ = parse_document(QUIZ_YAML.format(version=1), "quiz.yaml")
LEAD = {"name": "Ann Example", "email": "ann@example.com", "consent": "true"}


def quiz_doc(colour_text: str = "Which colour?") -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(_QUIZ)
    next(n for n in doc["nodes"] if n["id"] == "colour")["text"] = colour_text
    return doc


def drafted(doc: dict[str, Any]) -> FlowDrafted:
    plan_ = plan_draft(Registry(), doc, by="admin", at=T0)
    assert isinstance(plan_, Drafted) and plan_.created
    return plan_.record


def catalog_with_draft(doc: dict[str, Any]) -> tuple[FlowCatalog, int]:
    flow, errors = validate_document(doc, "quiz")
    assert flow is not None, errors
    catalog = FlowCatalog([flow])  # published as v1
    number = draft_version(content_hash(doc))
    catalog.add_draft(dataclasses.replace(flow, version=number))
    return catalog, number


# -- tokens ----------------------------------------------------------------------------------


def test_a_preview_token_round_trips_and_expires() -> None:
    tokens = PreviewTokens([SECRET], ttl_seconds=3600)
    token, expires_at = tokens.issue("quiz", -5, "demo", T0)
    assert expires_at == int(T0) + 3600
    claims = tokens.verify(token, T0 + 3599)
    assert (claims.flow_id, claims.version, claims.site_id) == ("quiz", -5, "demo")
    assert claims.allows_site("demo") and not claims.allows_site("shop")
    with pytest.raises(InvalidPreview, match="expired"):
        tokens.verify(token, T0 + 3600)


def test_an_admin_token_plays_on_any_site() -> None:
    tokens = PreviewTokens([SECRET])
    token, _ = tokens.issue("quiz", -5, ANY_SITE, T0)
    assert tokens.verify(token, T0).allows_site("shop")


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another signature
        lambda t: t.replace(".", ""),  # no signature at all
        lambda t: "x" + t,  # another payload
        lambda t: "",
        lambda t: "%%%.###",
    ],
)
def test_a_forged_or_malformed_token_is_refused(forge: Any) -> None:
    tokens = PreviewTokens([SECRET])
    token, _ = tokens.issue("quiz", -5, "demo", T0)
    with pytest.raises(InvalidPreview):
        tokens.verify(forge(token), T0)


def test_tokens_of_another_secret_or_a_resume_token_are_refused() -> None:
    other, _ = PreviewTokens([b"o" * 32]).issue("quiz", -5, "demo", T0)
    with pytest.raises(InvalidPreview, match="signature"):
        PreviewTokens([SECRET]).verify(other, T0)
    resume = ResumeTokens(SECRET, 3600).issue("conv-1", "demo", T0)  # same secret, other key
    with pytest.raises(InvalidPreview, match="signature"):
        PreviewTokens([SECRET]).verify(resume, T0)


def test_tokens_of_a_previous_secret_are_accepted_after_a_rotation() -> None:
    old, _ = PreviewTokens([b"o" * 32]).issue("quiz", -5, "demo", T0)
    assert PreviewTokens([SECRET, b"o" * 32]).verify(old, T0).version == -5


def test_only_drafts_get_tokens_and_secrets_must_be_long() -> None:
    with pytest.raises(ValueError, match="draft"):
        PreviewTokens([SECRET]).issue("quiz", 3, "demo", T0)
    with pytest.raises(ValueError, match="16 bytes"):
        PreviewTokens([b"short"])


# -- drafts in the registry and the catalog ---------------------------------------------------


def test_a_draft_number_is_negative_deterministic_and_ignores_the_version_field() -> None:
    doc = quiz_doc()
    number = draft_version(content_hash(doc))
    assert -DRAFT_VERSIONS <= number <= -1
    assert number == draft_version(content_hash({**doc, "version": 9}))
    assert number != draft_version(content_hash(quiz_doc("Hue?")))
    assert draft_version("sha256:" + "0" * 64) == -1


def test_a_draft_record_round_trips_with_its_own_compaction_key() -> None:
    record = drafted(quiz_doc())
    assert decode_record(encode_record(record)) == record
    assert record_key(record) == f"draft/quiz/{record.content_hash}".encode()


def test_a_draft_is_no_version_and_drafting_it_again_changes_nothing() -> None:
    record = drafted(quiz_doc())
    registry = apply(Registry(), record)
    assert registry.versions("quiz") == [] and registry.active_version("quiz") is None
    assert registry.drafts == {("quiz", record.version): record}
    again = plan_draft(registry, {**quiz_doc(), "version": 4}, by="bob", at=T0 + 1)
    assert again == Drafted(record, created=False)


def test_a_draft_whose_number_is_taken_by_other_content_is_refused() -> None:
    record = drafted(quiz_doc())
    impostor = dataclasses.replace(record, content_hash="sha256:" + "f" * 64)
    registry = {("quiz", record.version): impostor}
    assert plan_draft(Registry(drafts=registry), quiz_doc(), by="a", at=T0) == DraftCollision(
        record.version
    )


def test_the_catalog_plays_a_draft_only_when_asked_for_it() -> None:
    catalog, number = catalog_with_draft(quiz_doc("Draft colour?"))
    assert catalog.latest("quiz").version == 1  # type: ignore[union-attr]
    catalog.activate("quiz", number)  # never active
    assert catalog.for_site("quiz", "demo").version == 1  # type: ignore[union-attr]
    assert catalog.get("quiz", number).version == number  # type: ignore[union-attr]
    fresh = FlowCatalog()
    fresh.add_draft(catalog.get("quiz", number))  # type: ignore[arg-type]
    assert fresh.latest("quiz") is None and fresh.ids() == []  # a new flow's draft
    with pytest.raises(ValueError, match="negative"):
        fresh.add_draft(catalog.get("quiz", 1))  # type: ignore[arg-type]


def test_only_a_preview_start_may_pin_a_draft() -> None:
    catalog, number = catalog_with_draft(quiz_doc())
    new = ConversationState("c1")
    start = StartConversation(
        conversation_id="c1", seq=1, at=T0, flow_id="quiz", site_id="demo", flow_version=number
    )
    assert flow_for(catalog, new, start) is None
    preview = dataclasses.replace(start, preview=True)
    assert flow_for(catalog, new, preview).version == number  # type: ignore[union-attr]
    plain = dataclasses.replace(start, flow_version=0)
    assert flow_for(catalog, new, plain).version == 1  # type: ignore[union-attr]


# -- compatibility of the wire formats ---------------------------------------------------------


def test_events_commands_and_frames_from_before_previews_decode_as_not_previews() -> None:
    started = decode_event(
        orjson.dumps(
            {
                "type": "ConversationStarted",
                "v": 1,
                "conversation_id": "c1",
                "seq": 1,
                "id": "e1",
                "at": T0,
                "command_seq": 1,
                "flow_id": "quiz",
                "flow_version": 1,
                "site_id": "demo",
                "context": {},
            }
        )
    )
    assert isinstance(started, ConversationStarted) and started.preview is False
    command = decode_command(
        b'{"type":"StartConversation","v":1,"conversation_id":"c1","seq":1,"at":1.0,'
        b'"flow_id":"quiz","site_id":"demo"}'
    )
    assert isinstance(command, StartConversation)
    assert (command.flow_version, command.preview) == (0, False)
    frame = parse_client_frame('{"type":"start","v":1,"site":"demo","flow":"quiz"}')
    assert isinstance(frame, StartFrame) and frame.preview == ""
    marked = dataclasses.replace(started, preview=True)
    assert decode_event(orjson.dumps(marked)) == marked


# -- preview conversations kept out ----------------------------------------------------------


async def conversation(preview: bool) -> list[Event]:
    """A quiz conversation through a decision point to a lead, on the draft when
    ``preview`` (else on the published version)."""
    catalog, number = catalog_with_draft(quiz_doc("Draft colour?"))
    log = InMemoryEventLog()
    service = ConversationService(log, InMemoryKeyStore(), catalog, UniformPolicy())
    cid = "conv-preview" if preview else "conv-real"
    commands: list[Command] = [
        StartConversation(
            conversation_id=cid,
            seq=1,
            at=T0,
            flow_id="quiz",
            site_id="demo",
            flow_version=number if preview else 0,
            preview=preview,
        ),
        PressButton(conversation_id=cid, seq=2, at=T0 + 1, node_id="size", button_id="big"),
    ]
    for command in commands:
        reply = await service.handle(command)
        assert reply.error is None
    state = await service.state(cid)
    seq = 3
    while state.current_node != "contact":  # the decision's path: answer what comes
        node = state.current_node
        button = "red" if node == "colour" else "yes"
        press = PressButton(
            conversation_id=cid, seq=seq, at=T0 + seq, node_id=node or "", button_id=button
        )
        assert (await service.handle(press)).error is None
        state, seq = await service.state(cid), seq + 1
    lead = SubmitLead(conversation_id=cid, seq=seq, at=T0 + seq, node_id="contact", fields=LEAD)
    assert (await service.handle(lead)).error is None
    events = await log.read_conversation(cid)
    started = events[0]
    assert isinstance(started, ConversationStarted) and started.preview is preview
    assert started.flow_version == (number if preview else 1)
    return list(events)


async def test_a_preview_conversation_runs_the_draft_and_is_marked_in_its_state() -> None:
    events = await conversation(preview=True)
    state = fold(ConversationState("conv-preview"), events)
    assert state.preview and state.lead_captured and state.status == "completed"
    assert any(e.type == "EdgeChosen" for e in events)  # the policy decided as usual


@pytest.mark.parametrize("preview", [False, True])
async def test_read_models_skip_every_event_of_a_preview_conversation(preview: bool) -> None:
    events = await conversation(preview)
    view, writes = plan(None, events)
    if preview:
        assert (view, writes) == (None, None)
        for n in range(1, len(events)):  # in any chunking
            assert plan(None, events[n:]) == (None, None)
    else:
        assert writes is not None and writes.lead is not None and writes.increments


@pytest.mark.parametrize("preview", [False, True])
async def test_the_reward_ledger_skips_a_preview_conversation(preview: bool) -> None:
    events = await conversation(preview)
    ledger = RewardLedger()
    ledger.observe(events)
    ledger.expire()
    counted = sum(c.trials() for c in ledger.flows.values())
    assert counted == (0 if preview else 1)
    assert (FlowKey("quiz", 1) in ledger.flows) is not preview


@pytest.mark.parametrize("preview", [False, True])
async def test_lead_delivery_creates_no_delivery_for_a_preview(preview: bool) -> None:
    events = await conversation(preview)
    hook = Destination("demo", "crm", "webhook", url="https://crm.example/hook")

    def framing(lead: object) -> Frame:
        return Frame(
            transcript_url="https://x.example/t",
            flow_title="Quiz",
            consent_text=None,
            consent_fields=(),
            labels=(),
        )

    intake = take_in(events, {}, {"demo": [hook]}, 0.0, T0 + 100, framing)
    assert len(intake.deliveries) == (0 if preview else 1)
    by_history = leads_in(
        events, {events[0].conversation_id: events}, {"demo": [hook]}, 0.0, T0 + 100, framing
    )
    assert by_history == intake.deliveries


# -- the gateway's start ----------------------------------------------------------------------


class Gateway:
    def __init__(self) -> None:
        self.catalog, self.number = catalog_with_draft(quiz_doc("Draft colour?"))
        self.log = InMemoryEventLog()
        service = ConversationService(self.log, InMemoryKeyStore(), self.catalog, UniformPolicy())
        tokens = ResumeTokens(SECRET, 3600)
        self.previews = PreviewTokens(tokens.secrets)
        ids = itertools.count(1)
        self.ctx = GatewayContext(
            settings=GatewaySettings(resume_secret=SECRET),
            sites={"demo": Site("demo", DEV_ORIGINS), "shop": Site("shop", DEV_ORIGINS, ("x",))},
            catalog=self.catalog,
            bus=InProcessCommandBus(service),
            tokens=tokens,
            metrics=GatewayMetrics(),
            clock=lambda: T0,
            new_id=lambda: f"conv-{next(ids)}",
        )

    async def start(
        self, token: str, site: str = "demo", flow: str = "quiz"
    ) -> list[dict[str, Any]]:
        frame = {"type": "start", "v": 1, "site": site, "flow": flow, "preview": token}
        outcome = await Connection(self.ctx, "http://localhost:8080").on_text(
            orjson.dumps(frame).decode()
        )
        return [orjson.loads(text) for text in outcome.frames]


async def test_the_gateway_starts_a_preview_on_the_token_s_draft() -> None:
    gw = Gateway()
    token, _ = gw.previews.issue("quiz", gw.number, "shop", T0)
    frames = await gw.start(token, site="shop")  # shop's flows list lacks quiz: the token stands
    assert frames[0]["type"] == "session"
    texts = [f["message"]["text"] for f in frames[1:]]
    assert texts[:2] == ["Hello!", "Two quick questions."]
    started = (await gw.log.read_conversation(frames[0]["conversation_id"]))[0]
    assert isinstance(started, ConversationStarted)
    assert (started.preview, started.flow_version) == (True, gw.number)


@pytest.mark.parametrize(
    ("case", "retryable"),
    [
        ("forged", False),
        ("expired", False),
        ("other site", False),
        ("other flow", False),
        ("unloaded", True),
    ],
)
async def test_the_gateway_refuses_a_bad_preview_token_with_a_clear_error(
    case: str, retryable: bool
) -> None:
    gw = Gateway()
    token, _ = gw.previews.issue("quiz", gw.number, "demo", T0)
    site, flow = "demo", "quiz"
    if case == "forged":
        token = token[:-3] + "abc"
    elif case == "expired":
        token, _ = PreviewTokens([SECRET], ttl_seconds=-1).issue("quiz", gw.number, "demo", T0)
    elif case == "other site":
        site = "shop"
    elif case == "other flow":
        flow = "solar-quote"
    else:
        token, _ = gw.previews.issue("quiz", gw.number - 1, "demo", T0)
    frames = await gw.start(token, site, flow)
    assert [f["type"] for f in frames] == ["error"]
    assert (frames[0]["code"], frames[0]["retryable"]) == ("invalid_preview", retryable)
    assert await gw.log.read_after(0, 10) == []  # nothing started
