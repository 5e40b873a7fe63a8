"""The verifier's messages: a conversation's transcript, results, the summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.codec import MessageError, UnknownType, UnsupportedVersion
from schemas.commands import Command
from schemas.events import Event
from services.log_follower import UnreadableLog as UnreadableLog  # the log's one

NO_JOURNAL = "commands not journaled (logged before the command journal existed)"


def unreadable(
    where: str, exc: MessageError, *, log: str, partition: int, offset: int
) -> UnreadableLog:
    """The log's :class:`~services.log_follower.UnreadableLog` for a record the
    verifier cannot decode (a schema version it does not know, say): the log
    cannot be verified past it. ``where`` names the record as transcripts do
    (``events position 12``, ``commands partition 2 offset 7``); the reason is
    the decoder's, as is."""
    return UnreadableLog(
        where,
        str(exc),
        log=log,
        partition=partition,
        offset=offset,
        newer=isinstance(exc, UnsupportedVersion | UnknownType),
    )


@dataclass(frozen=True, slots=True)
class LoggedAt:
    """A logged event and where it is: ``position 12`` or ``partition 2 offset 45``."""

    event: Event
    where: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """What the log holds about one conversation: its commands in the order they
    were handled (a journaled SubmitLead's fields still sealed) and its events in
    seq order. ``commands_lost`` says why the commands are incomplete (e.g. past
    the commands topic's retention), if they are. ``pending_from``: the index of
    the first command the processors may not have handled yet (past their
    committed offset; None: all were handled); events the log lacks for it or a
    later command are then not a divergence."""

    conversation_id: str
    commands: tuple[Command, ...]
    events: tuple[LoggedAt, ...]
    commands_lost: str = ""
    pending_from: int | None = None


@dataclass(frozen=True, slots=True)
class FieldDiff:
    name: str
    logged: Any
    replayed: Any


DivergenceKind = Literal["differs", "missing_in_replay", "missing_in_log", "replay_failed"]

KIND_TEXT: dict[str, str] = {
    "differs": "the replayed event differs from the logged one",
    "missing_in_replay": "the log has events the replay didn't produce",
    "missing_in_log": "the replay produced events the log lacks",
    "replay_failed": "the replay failed",
}


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first point where the replay and the log part ways in a conversation."""

    conversation_id: str
    kind: DivergenceKind
    seq: int
    event_id: str
    type: str
    command_seq: int
    where: str  # in the log; "" when the log lacks the event
    fields: tuple[FieldDiff, ...] = ()
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "kind": self.kind,
            "seq": self.seq,
            "event_id": self.event_id,
            "type": self.type,
            "command_seq": self.command_seq,
            "where": self.where,
            "fields": [
                {"name": f.name, "logged": f.logged, "replayed": f.replayed} for f in self.fields
            ],
            "detail": self.detail,
        }


Status = Literal["identical", "identical_without_lead_details", "diverged", "unverifiable"]


@dataclass(frozen=True, slots=True)
class ConversationResult:
    conversation_id: str
    status: Status
    events: int  # logged events of the conversation
    decisions: int  # logged decisions (EdgeChosen) the replay reproduced
    divergence: Divergence | None = None
    reason: str = ""  # why it is unverifiable


@dataclass
class Summary:
    """Counts over every conversation checked, and the first divergences."""

    max_divergences: int = 10
    conversations: int = 0  # verified: identical, with or without lead details
    events: int = 0
    decisions: int = 0
    without_lead_details: int = 0
    diverged: int = 0
    unverifiable: Counter[str] = field(default_factory=Counter)
    divergences: list[Divergence] = field(default_factory=list)
    skipped_commands: int = 0  # commands the processors could not read either

    def add(self, result: ConversationResult) -> None:
        if result.status == "unverifiable":
            self.unverifiable[result.reason] += 1
            return
        self.events += result.events
        self.decisions += result.decisions
        if result.status == "diverged":
            self.diverged += 1
            if result.divergence is not None and len(self.divergences) < self.max_divergences:
                self.divergences.append(result.divergence)
            return
        self.conversations += 1
        if result.status == "identical_without_lead_details":
            self.without_lead_details += 1

    @property
    def identical(self) -> bool:
        return self.diverged == 0
