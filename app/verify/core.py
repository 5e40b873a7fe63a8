"""Verify one conversation: replay its commands through the decider and compare
the events with the logged ones, byte for byte. Pure (no I/O, no clock).

The state is folded from the *replayed* events; each command is decided on the
flow version the log's ConversationStarted names (the live processor picked the
latest then; the latest may be newer now) and with the policy its logged
decision names (:mod:`app.verify.policies`). Events are compared as the
codec encodes them (ids, seqs, chosen edges, propensities, seeds, sealed blobs).

Lead details need the conversation's key: when it is erased, a journaled
SubmitLead cannot be opened, so that command's logged events are taken as they
are (their seqs and ids still checked by the fold); a SubmitLead whose fields are
readable (Kafka: sealed with the command secret) is replayed and compared except
for the ``sealed`` blob. Either way the conversation counts as verified without
lead details. A personal typed answer (``QuestionAnswered.sealed``) is sealed with
the same key and compared the same way: without the key (erased, or a cluster
that never had it, such as a regions deployment's analytics side), all but its blob.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.verify.model import (
    ConversationResult,
    Divergence,
    DivergenceKind,
    FieldDiff,
    LoggedAt,
    Status,
    Transcript,
)
from app.verify.policies import UNIFORM, Unavailable
from schemas.codec import encode
from schemas.commands import Command, StartConversation
from schemas.events import (
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    QuestionAnswered,
    event_id,
)
from schemas.flow import Flow
from services.catalog import FlowCatalog
from services.conversation.decider import decide
from services.conversation.journal import is_sealed, open_from_journal
from services.conversation.sealing import AesGcmSealer, Sealer, Unsealable
from services.conversation.service import flow_for
from services.conversation.state import ConversationState, fold
from services.policy_port import EdgePolicy

PolicyFor = Callable[[str], EdgePolicy]  # raises Unavailable
ERASED = ""  # what a replay without the key puts in LeadCaptured.sealed
NOT_PROCESSED = "commands not processed yet (past the processors' committed offset)"


class _BlindSealer:
    """Seals nothing: the key is erased, the blob is not compared."""

    def seal(self, plaintext: bytes, event_id: str) -> str:
        return ERASED


class _Unverifiable(Exception):
    pass


def _blank(event: Event) -> Event:
    """The event without the blobs sealed with the conversation key."""
    if isinstance(event, LeadCaptured | QuestionAnswered):
        return dataclasses.replace(event, sealed=ERASED)
    return event


def _sealed_with_the_key(event: Event) -> bool:
    return isinstance(event, LeadCaptured) or (
        isinstance(event, QuestionAnswered) and event.personal
    )


def _as_dict(event: Event) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(encode(event))
    return obj


def _field_diffs(logged: Event, replayed: Event) -> tuple[FieldDiff, ...]:
    a, b = _as_dict(logged), _as_dict(replayed)
    return tuple(
        FieldDiff(name, a.get(name), b.get(name))
        for name in sorted(set(a) | set(b))
        if a.get(name) != b.get(name)
    )


def _divergence(
    cid: str,
    kind: DivergenceKind,
    event: Event,
    where: str = "",
    fields: tuple[FieldDiff, ...] = (),
    detail: str = "",
) -> Divergence:
    return Divergence(
        conversation_id=cid,
        kind=kind,
        seq=event.seq,
        event_id=event.id,
        type=event.type,
        command_seq=event.command_seq,
        where=where,
        fields=fields,
        detail=detail,
    )


def _flow(
    catalog: FlowCatalog, state: ConversationState, command: Command, logged: Sequence[LoggedAt]
) -> Flow | None:
    """The flow the live service decided ``command`` on; raises _Unverifiable when
    the catalog no longer has it."""
    if state.status == "new" and isinstance(command, StartConversation):
        first = logged[0].event if logged else None
        if not isinstance(first, ConversationStarted) or first.seq != 1:
            return catalog.latest(command.flow_id)  # the comparison will tell
        flow = catalog.get(command.flow_id, first.flow_version)
        if flow is None:
            raise _Unverifiable(
                f"flow {command.flow_id} v{first.flow_version} is not in the catalog"
            )
        return flow
    flow = flow_for(catalog, state, command)
    if flow is None and state.status != "new":
        raise _Unverifiable(f"flow {state.flow_id} v{state.flow_version} is not in the catalog")
    return flow


def _policy(policy_for: PolicyFor, command: Command, pending: Sequence[LoggedAt]) -> EdgePolicy:
    """The policy of the decision logged for ``command`` (uniform if none is)."""
    for logged in pending:
        event = logged.event
        if event.command_seq != command.seq:
            break
        if isinstance(event, EdgeChosen):
            try:
                return policy_for(event.policy_version)
            except Unavailable as exc:
                raise _Unverifiable(str(exc)) from exc
    return UNIFORM


def _own_events(command: Command, pending: Sequence[LoggedAt]) -> list[Event]:
    out: list[Event] = []
    for logged in pending:
        if logged.event.command_seq != command.seq:
            break
        out.append(logged.event)
    return out


@dataclass(frozen=True, slots=True)
class _Compared:
    """How a command's replayed events compare with the log from position ``n``."""

    divergence: Divergence | None = None
    beyond_log: bool = False  # the divergence is an event the log lacks
    decisions: int = 0
    blind: bool = False  # a lead compared without its sealed blob


def _compare(
    cid: str, replayed: Sequence[Event], logged: Sequence[LoggedAt], n: int, blind_key: bool
) -> _Compared:
    decisions = 0
    blind = False
    for i, event in enumerate(replayed):
        if n + i >= len(logged):
            return _Compared(_divergence(cid, "missing_in_log", event), True, decisions, blind)
        original = logged[n + i]
        mine, theirs = event, original.event
        if blind_key:
            mine, theirs = _blank(mine), _blank(theirs)
            blind = blind or _sealed_with_the_key(event)
        if encode(mine) != encode(theirs):
            diffs = _field_diffs(theirs, mine)
            divergence = _divergence(cid, "differs", theirs, original.where, diffs)
            return _Compared(divergence, False, decisions, blind)
        decisions += isinstance(event, EdgeChosen)
    return _Compared(None, False, decisions, blind)


def _as_logged(
    cid: str, state: ConversationState, command: Command, pending: Sequence[LoggedAt]
) -> tuple[ConversationState, int] | Divergence:
    """A command whose lead fields cannot be opened (key erased): its logged events
    are taken as they are, their ids and seqs checked. The new state and how many."""
    own = _own_events(command, pending)
    for j, event in enumerate(own):
        if event.id != event_id(cid, event.seq):
            diff = FieldDiff("id", event.id, event_id(cid, event.seq))
            return _divergence(cid, "differs", event, pending[j].where, (diff,))
    try:
        return fold(state, own), len(own)
    except ValueError as exc:
        return _divergence(cid, "replay_failed", own[0], pending[0].where, detail=str(exc))


def _decider_failed(
    cid: str, state: ConversationState, command: Command, where: str, exc: Exception
) -> Divergence:
    seq = state.seq + 1
    detail = f"the decider raised {type(exc).__name__}: {exc}"
    return Divergence(
        cid, "replay_failed", seq, event_id(cid, seq), command.type, command.seq, where, (), detail
    )


def verify_conversation(
    transcript: Transcript, catalog: FlowCatalog, policy_for: PolicyFor, key: bytes | None
) -> ConversationResult:
    """Replay ``transcript`` and compare; ``key`` is the conversation's key (None:
    erased, or it never had one)."""
    cid, logged = transcript.conversation_id, transcript.events
    if transcript.commands_lost:
        return ConversationResult(
            cid, "unverifiable", len(logged), 0, None, transcript.commands_lost
        )
    state = ConversationState(cid)
    sealer: Sealer = _BlindSealer() if key is None else AesGcmSealer(key)
    n = decisions = 0
    blind = False

    def diverged(divergence: Divergence) -> ConversationResult:
        return ConversationResult(cid, "diverged", len(logged), decisions, divergence)

    def unverifiable(reason: str) -> ConversationResult:
        return ConversationResult(cid, "unverifiable", len(logged), decisions, None, reason)

    for index, command in enumerate(transcript.commands):
        pending = logged[n:]
        try:
            if is_sealed(command):
                command = open_from_journal(command, key)
            flow = _flow(catalog, state, command, pending)
            policy = _policy(policy_for, command, pending)
        except _Unverifiable as exc:
            return unverifiable(str(exc))
        except Unsealable:
            if key is not None and pending:  # the key is there: the journal was changed
                detail = f"journaled command {command.seq} cannot be opened"
                first = pending[0]
                return diverged(
                    _divergence(cid, "replay_failed", first.event, first.where, detail=detail)
                )
            taken = _as_logged(cid, state, command, pending)
            if isinstance(taken, Divergence):
                return diverged(taken)
            state, count = taken
            n, blind = n + count, True
            continue
        try:
            decision = decide(state, command, flow, policy, sealer)
        except Exception as exc:  # a decider that raises on the log's input is a finding
            return diverged(
                _decider_failed(cid, state, command, pending[0].where if pending else "", exc)
            )
        compared = _compare(cid, decision.events, logged, n, key is None)
        decisions += compared.decisions
        blind = blind or compared.blind
        if compared.divergence is not None:
            in_flight = transcript.pending_from
            if compared.beyond_log and in_flight is not None and index >= in_flight:
                return unverifiable(NOT_PROCESSED)
            return diverged(compared.divergence)
        n += len(decision.events)
        state = decision.state
    if n < len(logged):
        extra = logged[n]
        return diverged(_divergence(cid, "missing_in_replay", extra.event, extra.where))
    status: Status = "identical_without_lead_details" if blind else "identical"
    return ConversationResult(cid, status, len(logged), decisions)
