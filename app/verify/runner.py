"""The verifier's shell: transcripts in, a summary out.

Keys are looked up read-only (``KeyStore.get``: a verification never creates
one) and only for conversations with a lead submission.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable

from app.verify.core import verify_conversation
from app.verify.model import ConversationResult, Summary, Transcript
from app.verify.policies import ReplayPolicies
from schemas.commands import AnswerQuestion, SubmitLead
from schemas.events import LeadCaptured, QuestionAnswered
from services.catalog import FlowCatalog

GetKey = Callable[[str], Awaitable[bytes | None]]


def needs_key(transcript: Transcript) -> bool:
    return any(isinstance(c, SubmitLead | AnswerQuestion) for c in transcript.commands) or any(
        isinstance(e.event, LeadCaptured | QuestionAnswered) for e in transcript.events
    )


async def verify_one(
    transcript: Transcript, catalog: FlowCatalog, policies: ReplayPolicies, get_key: GetKey
) -> ConversationResult:
    key = await get_key(transcript.conversation_id) if needs_key(transcript) else None
    return verify_conversation(transcript, catalog, policies.policy, key)


async def verify_all(
    transcripts: AsyncIterable[Transcript],
    catalog: FlowCatalog,
    policies: ReplayPolicies,
    get_key: GetKey,
    max_divergences: int = 10,
) -> Summary:
    summary = Summary(max_divergences=max_divergences)
    async for transcript in transcripts:
        summary.add(await verify_one(transcript, catalog, policies, get_key))
    return summary
