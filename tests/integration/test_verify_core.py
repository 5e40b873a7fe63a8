"""The replay verifier on in-memory logs made by the real ConversationService.

Each test guards one promise of ``leadflow replay --verify``: an honest log is
reproduced bit for bit (uniform and Thompson decisions, flows pinned to the
version a conversation started on, erased keys); any tampering is reported at
the first differing event with the fields that differ. Logs of 12 to 30
conversations here; tests/integration/test_larger_logs.py runs the same tests on
the 30 to 80 they were written with, and on 100 to 200."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import orjson
import pytest

from app.verify.core import NOT_PROCESSED, verify_conversation
from app.verify.model import LoggedAt, Summary, Transcript
from app.verify.policies import ReplayPolicies
from app.verify.port_source import group, read_all
from app.verify.runner import verify_one
from policy.snapshot import Guardrails, encode_snapshot
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from schemas.codec import encode
from schemas.commands import StartConversation, SubmitLead
from schemas.events import ConversationStarted, EdgeChosen, Event, LeadCaptured, event_id
from services.catalog import FlowCatalog
from services.conversation.journal import SEALED_FIELD
from services.conversation.service import ConversationService
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from tests.support.journaled_traffic import email_of, play
from tests.support.verify_snapshots import CATALOG, latest, snapshot


def no_archive(version: str) -> bytes | None:
    return None


class World:
    def __init__(self, policy: ThompsonPolicy | UniformPolicy, catalog: FlowCatalog = CATALOG):
        self.log = InMemoryEventLog()
        self.keys = InMemoryKeyStore()
        self.service = ConversationService(self.log, self.keys, catalog, policy)

    async def transcripts(self) -> list[Transcript]:
        return group(*await read_all(self.log))


async def verify(
    world: World,
    transcripts: list[Transcript] | None = None,
    archive: Mapping[str, bytes] | None = None,
    catalog: FlowCatalog = CATALOG,
) -> Summary:
    policies = ReplayPolicies((archive or {}).get)
    summary = Summary()
    for transcript in transcripts if transcripts is not None else await world.transcripts():
        summary.add(await verify_one(transcript, catalog, policies, world.keys.get))
    return summary


def tamper(transcripts: list[Transcript], index: int, seq: int, **changes: object) -> Event:
    """Change event ``seq`` of the ``index``-th conversation; returns the original."""
    t = transcripts[index]
    events = list(t.events)
    original = events[seq - 1].event
    events[seq - 1] = LoggedAt(dataclasses.replace(original, **changes), events[seq - 1].where)  # type: ignore[arg-type]
    transcripts[index] = dataclasses.replace(t, events=tuple(events))
    return original


def first_with(transcripts: list[Transcript], kind: type) -> tuple[int, Event]:
    for i, t in enumerate(transcripts):
        for logged in t.events:
            if isinstance(logged.event, kind):
                return i, logged.event
    raise AssertionError(f"no {kind.__name__} in the log")


@pytest.mark.parametrize("conversations", [8])
async def test_an_honest_uniform_log_is_reproduced_bit_for_bit(conversations: int) -> None:
    """Every event of every conversation (duplicates, gaps, refusals, leads) replays
    identically, and the counts add up to the log's."""
    world = World(UniformPolicy())
    ids = await play(world.service, conversations)
    events, _ = await read_all(world.log)
    kinds = {type(e.event).__name__ for e in events}
    assert {"LeadCaptured", "CommandRejected", "EdgeChosen", "ConversationCompleted"} <= kinds
    summary = await verify(world)
    assert summary.identical and summary.diverged == 0
    assert summary.conversations == len(ids) == conversations
    assert summary.events == len(events)
    assert summary.decisions == sum(isinstance(e.event, EdgeChosen) for e in events) > 0
    assert not summary.unverifiable


@pytest.mark.parametrize("conversations", [6])
async def test_the_journal_never_holds_contact_details_in_clear(conversations: int) -> None:
    """Journaled SubmitLeads carry only a sealed blob (crypto-shredding)."""
    world = World(UniformPolicy())
    await play(world.service, conversations)
    _, commands = await read_all(world.log)
    leads = [c.command for c in commands if isinstance(c.command, SubmitLead)]
    assert leads
    assert all(set(c.fields) == {SEALED_FIELD} for c in leads)
    journal = b"".join(encode(c.command) for c in commands)
    assert not any(email_of(n).encode() in journal for n in range(conversations))
    assert b"Visitor " not in journal


def tampering_cases() -> list[tuple[str, object]]:
    return [("chosen", None), ("propensity", 0.123), ("id", "not-the-id"), ("seed", 42)]


@pytest.mark.parametrize("conversations", [8])
async def test_a_tampered_decision_is_the_first_divergence(conversations: int) -> None:
    """Changing an EdgeChosen's chosen edge, propensity, id or seed is reported at
    that event, naming exactly that field with the logged and replayed values."""
    world = World(UniformPolicy())
    await play(world.service, conversations)
    for name, value in tampering_cases():
        transcripts = await world.transcripts()
        index, decision = first_with(transcripts, EdgeChosen)
        assert isinstance(decision, EdgeChosen)
        if name == "chosen":
            value = next(c for c in decision.candidates if c != decision.chosen)
        tamper(transcripts, index, decision.seq, **{name: value})
        summary = await verify(world, transcripts)
        assert summary.diverged == 1, name
        (div,) = summary.divergences
        assert (div.kind, div.seq, div.type) == ("differs", decision.seq, "EdgeChosen")
        assert div.conversation_id == decision.conversation_id
        assert div.event_id == (decision.id if name != "id" else "not-the-id")
        assert [(f.name, f.logged, f.replayed) for f in div.fields] == [
            (name, value, getattr(decision, name))
        ]
        assert div.where.startswith("events position ")


async def test_extra_and_missing_events_are_reported() -> None:
    """A log with an event the replay did not produce, or without one it did."""
    world = World(UniformPolicy())
    await play(world.service, 20)
    transcripts = await world.transcripts()
    t = transcripts[3]
    last = t.events[-1].event
    extra = dataclasses.replace(
        last, seq=last.seq + 1, id=event_id(t.conversation_id, last.seq + 1)
    )
    transcripts[3] = dataclasses.replace(
        t, events=(*t.events, LoggedAt(extra, "events position 999"))
    )
    transcripts[5] = dataclasses.replace(transcripts[5], events=transcripts[5].events[:-1])
    summary = await verify(world, transcripts)
    assert summary.diverged == 2
    by_kind = {d.kind: d for d in summary.divergences}
    assert by_kind["missing_in_replay"].seq == last.seq + 1
    assert by_kind["missing_in_replay"].where == "events position 999"
    lost = transcripts[5]
    assert by_kind["missing_in_log"].seq == len(lost.events) + 1
    assert by_kind["missing_in_log"].where == ""


@pytest.mark.parametrize("conversations", [18])  # 6 a flow: enough to reach decisions in each
async def test_thompson_decisions_replay_from_the_archived_snapshot(conversations: int) -> None:
    """Decisions made with installed snapshots (one killed) replay identically from
    the archive, and a different snapshot under the same version diverges."""
    flows = [latest(f) for f in ("solar-quote", "insurance-quote", "saas-demo")]
    snaps = [
        snapshot(flows[0], "solar-quote@1#a", seed=1),
        snapshot(flows[1], "insurance-quote@1#a", seed=2, rails=Guardrails(holdout=0.3)),
        snapshot(flows[2], "saas-demo@1#a", seed=3, rails=Guardrails(killed=True)),
    ]
    policy = ThompsonPolicy()
    for snap in snaps:
        assert snap is not None and policy.install(snap)
    world = World(policy)
    await play(world.service, conversations)
    events, _ = await read_all(world.log)
    versions = {e.event.policy_version for e in events if isinstance(e.event, EdgeChosen)}
    assert {"solar-quote@1#a", "insurance-quote@1#a"} <= versions
    archive = {s.version: encode_snapshot(s) for s in snaps}
    summary = await verify(world, archive=archive)
    assert summary.identical and summary.conversations == conversations
    assert summary.decisions == sum(isinstance(e.event, EdgeChosen) for e in events)

    forged = dict(
        archive,
        **{"solar-quote@1#a": encode_snapshot(snapshot(flows[0], "solar-quote@1#a", seed=9))},
    )
    summary = await verify(world, archive=forged)
    assert summary.diverged > 0
    assert all(d.type == "EdgeChosen" for d in summary.divergences)
    assert {f.name for d in summary.divergences for f in d.fields} & {"chosen", "propensity"}

    missing = {k: v for k, v in archive.items() if k != "insurance-quote@1#a"}
    summary = await verify(world, archive=missing)
    assert summary.unverifiable == {
        "policy snapshot insurance-quote@1#a is not archived": summary.unverifiable.total()
    }
    assert summary.unverifiable.total() > 0 and summary.identical


async def test_conversations_replay_on_the_flow_version_they_started_on() -> None:
    """A start is replayed on the version its ConversationStarted names, even when
    the catalog has a newer one; a version no longer in the catalog is unverifiable."""
    v1 = CATALOG.latest("solar-quote")
    assert v1 is not None
    v2 = dataclasses.replace(
        v1, version=2, start="property" if v1.start != "property" else v1.start
    )
    world = World(UniformPolicy(), FlowCatalog([v1]))
    await play(world.service, 10, flows=("solar-quote",))
    newer = FlowCatalog([v1, v2])
    world.service = ConversationService(world.log, world.keys, newer, UniformPolicy())
    await play(world.service, 10, flows=("solar-quote",), prefix="w")
    events, _ = await read_all(world.log)
    started = [e.event for e in events if isinstance(e.event, ConversationStarted)]
    assert {e.flow_version for e in started} == {1, 2}
    assert (await verify(world, catalog=newer)).conversations == 20
    summary = await verify(world, catalog=FlowCatalog([v2]))
    assert summary.unverifiable == {"flow solar-quote v1 is not in the catalog": 10}
    assert summary.conversations == 10


@pytest.mark.parametrize("conversations", [8])
async def test_an_erased_key_leaves_everything_but_the_lead_details_verified(
    conversations: int,
) -> None:
    """Erasing a conversation's key makes its journaled lead unreadable: the rest of
    the conversation is still verified, and counted as without lead details; with
    the key, a changed sealed blob is a divergence."""
    world = World(UniformPolicy())
    await play(world.service, conversations)
    transcripts = await world.transcripts()
    index, lead = first_with(transcripts, LeadCaptured)
    assert isinstance(lead, LeadCaptured)
    tamper(transcripts, index, lead.seq, sealed=lead.sealed[:-4] + "AAAA")
    summary = await verify(world, transcripts)
    assert summary.diverged == 1
    assert [f.name for f in summary.divergences[0].fields] == ["sealed"]

    assert await world.keys.delete(lead.conversation_id)
    summary = await verify(world, transcripts)
    assert summary.identical and summary.without_lead_details == 1
    assert summary.conversations == conversations
    # the lead's events are taken as logged, but their ids are still checked
    tamper(transcripts, index, lead.seq, id="forged-id")
    summary = await verify(world, transcripts)
    assert summary.diverged == 1
    (div,) = summary.divergences
    assert (div.seq, div.type, div.fields[0].name) == (lead.seq, "LeadCaptured", "id")


@pytest.mark.parametrize("conversations", [8])
async def test_readable_lead_fields_with_an_erased_key_are_replayed_without_the_blob(
    conversations: int,
) -> None:
    """Kafka's commands carry lead fields readable with the command secret: with the
    conversation key erased, the lead is replayed and compared except ``sealed``."""
    world = World(UniformPolicy())
    cids = await play(world.service, conversations)
    transcripts = await world.transcripts()
    index, lead = first_with(transcripts, LeadCaptured)
    key = await world.keys.get(lead.conversation_id)
    opened = [
        c if not isinstance(c, SubmitLead) else _open(c, key) for c in transcripts[index].commands
    ]
    t = dataclasses.replace(transcripts[index], commands=tuple(opened))
    result = verify_conversation(t, CATALOG, ReplayPolicies(no_archive).policy, None)
    assert result.status == "identical_without_lead_details", result
    assert result.events == len(t.events) and len(cids) == conversations


def _open(command: SubmitLead, key: bytes | None) -> SubmitLead:
    from services.conversation.journal import open_from_journal

    opened = open_from_journal(command, key)
    assert isinstance(opened, SubmitLead) and SEALED_FIELD not in opened.fields
    return opened


async def test_commands_past_retention_or_never_journaled_are_unverifiable() -> None:
    """A conversation whose source says its commands are lost is counted as
    unverifiable, not as a divergence; commands silently missing are a divergence."""
    world = World(UniformPolicy())
    await play(world.service, 5)
    transcripts = await world.transcripts()
    transcripts[0] = dataclasses.replace(transcripts[0], commands_lost="commands past retention")
    transcripts[1] = dataclasses.replace(transcripts[1], commands=())
    summary = await verify(world, transcripts)
    assert summary.conversations == 3 and summary.diverged == 1
    assert summary.unverifiable == {"commands past retention": 1}
    (div,) = summary.divergences
    assert (div.kind, div.seq, div.type) == ("missing_in_replay", 1, "ConversationStarted")
    assert orjson.loads(orjson.dumps(div.to_json()))["kind"] == "missing_in_replay"


async def test_events_missing_for_commands_not_processed_yet_are_not_a_divergence() -> None:
    """Kafka: commands past the processors' committed offset may still be in flight;
    the events the log lacks for them make the conversation unverifiable, while the
    same gap before that offset is a divergence."""
    world = World(UniformPolicy())
    await play(world.service, 10)
    transcripts = await world.transcripts()
    t = next(t for t in transcripts if len(t.commands) >= 3)
    last = t.commands[-1]
    cut = dataclasses.replace(
        t, events=tuple(e for e in t.events if e.event.command_seq != last.seq)
    )
    policy = ReplayPolicies(no_archive).policy
    pending = dataclasses.replace(cut, pending_from=len(t.commands) - 1)
    result = verify_conversation(pending, CATALOG, policy, await world.keys.get(t.conversation_id))
    assert (result.status, result.reason) == ("unverifiable", NOT_PROCESSED)
    handled = dataclasses.replace(cut, pending_from=len(t.commands))
    result = verify_conversation(handled, CATALOG, policy, await world.keys.get(t.conversation_id))
    assert result.status == "diverged" and result.divergence is not None
    assert result.divergence.kind == "missing_in_log"


async def test_a_lead_refused_before_its_fields_are_read_is_journaled_without_them() -> None:
    """A SubmitLead on the wrong node (a stale widget) is refused unread: journaled
    with no fields and no key created; the replay refuses it alike."""
    world = World(UniformPolicy())
    start = StartConversation(
        conversation_id="stale-1", seq=1, at=49.0, flow_id="saas-demo", site_id="demo"
    )
    stale = SubmitLead(
        conversation_id="stale-1",
        seq=2,
        at=50.0,
        node_id="no-such-node",
        fields={"email": "stale@example.com"},
    )
    await world.service.handle(start)
    reply = await world.service.handle(stale)
    assert reply.error is not None and reply.error.code == "wrong_node"
    assert await world.keys.get("stale-1") is None
    _, commands = await read_all(world.log)
    assert [c.command for c in commands] == [start, dataclasses.replace(stale, fields={})]
    summary = await verify(world)
    assert summary.identical and summary.conversations == 1
