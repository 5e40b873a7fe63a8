"""``leadflow replay --verify`` without a conversation's key, on typed answers.

A personal typed answer is sealed with the conversation key in ``QuestionAnswered``,
like a lead's details. Where the commands are readable without that key (Kafka: sealed
with the command secret) but the key is not there (erased, or the analytics cluster of
a regions deployment, which never holds the regions' keys: docs/runbook.md, "Regions"),
the answer is replayed and compared except its blob, as a lead is; it used to diverge on
``sealed``."""

from __future__ import annotations

import dataclasses

from app.verify.core import verify_conversation
from app.verify.policies import ReplayPolicies
from app.verify.port_source import group, read_all
from policy.uniform import UniformPolicy
from schemas.events import QuestionAnswered
from services.conversation.journal import open_from_journal
from services.conversation.service import ConversationService
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from tests.support.journaled_traffic import play
from tests.support.verify_snapshots import CATALOG


def no_archive(version: str) -> bytes | None:
    return None


async def test_a_personal_typed_answer_verifies_without_the_key_except_its_blob() -> None:
    log, keys = InMemoryEventLog(), InMemoryKeyStore()
    await play(ConversationService(log, keys, CATALOG, UniformPolicy()), 12)
    transcripts = group(*await read_all(log))
    sealed = [
        t
        for t in transcripts
        if any(
            isinstance(e.event, QuestionAnswered) and e.event.personal and e.event.sealed
            for e in t.events
        )
    ]
    assert sealed, "no conversation with a personal typed answer in the traffic"
    policy = ReplayPolicies(no_archive).policy
    for transcript in sealed:
        key = await keys.get(transcript.conversation_id)
        # the commands as Kafka's commands topic holds them: readable without the key
        opened = tuple(open_from_journal(c, key) for c in transcript.commands)
        readable = dataclasses.replace(transcript, commands=opened)
        assert verify_conversation(readable, CATALOG, policy, key).status == "identical"
        blind = verify_conversation(readable, CATALOG, policy, None)
        assert blind.status == "identical_without_lead_details", blind
        # the rest of the answer is still compared: a changed value is a divergence
        events = list(readable.events)
        i = next(i for i, e in enumerate(events) if isinstance(e.event, QuestionAnswered))
        answer = events[i].event
        assert isinstance(answer, QuestionAnswered)
        events[i] = dataclasses.replace(
            events[i], event=dataclasses.replace(answer, variable=answer.variable + "-forged")
        )
        forged = dataclasses.replace(readable, events=tuple(events))
        assert verify_conversation(forged, CATALOG, policy, None).status == "diverged"
