"""One conversation's part in the rewards (:mod:`policy.rewards`), pure: when its
outcome is final, which of its decisions count and in which cell, going back.

An outcome is counted only once it is **final**, so that successes (known at
once) are never weighed against failures that are not known yet
(:func:`ending_of`, :func:`ending_before`):

* a conversation is final when it captures a lead (a success) or completes
  (``ConversationCompleted``: a success if it captured a lead, else a failure);
* when it is **abandoned**: no event of it for ``idle`` seconds, or sooner when
  its flow declares an ``abandon_after`` (``ConversationAbandoned``; a failure:
  a lead ends a conversation's outcome first);
* when its reward window closes, ``horizon`` seconds after its start (a failure).

Each conversation counts at most once per decision point (``node_id``,
``button_id``): for its first decision there (a loop back through a point
would weigh its outcome twice), and once for each other point it passed
(:func:`decided`).

An outcome is counted in the cell the decision was conditioned on (its
``EdgeChosen.features``; the conversation's cell at its start when a decision
logged none, as the uniform policy does; :func:`logged_cell`).

**Going back** (``WentBack``): a decision logged after the step the visitor
re-opened (``EdgeChosen.seq > withdrawn_seq``: the edge of the withdrawn
press) was rejected by the visitor, so its outcome is known at once: a
failure, whatever the conversation does next. It is withdrawn from the
conversation's decisions (its point is free again) and counted as a failure
when the conversation is counted, in start order like every outcome (counted
at the go back, failures known early would come before the outcomes of the
same conversations still open: the censoring bias the start order avoids). A
new decision at the same point after going back is a separate trial, with the
conversation's own outcome; the answers it saw are the ones that stand (the
withdrawn presses are forgotten, as the decider forgot them). A conversation
counts at most one such failure per point, its first: a visitor going back and
forth at a point (up to the decider's cap of 300 commands) would otherwise add
a failure to its edges with every round (:func:`went_back`, :func:`trials`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from policy.features import cell_from_labels
from policy.reward_counts import Answers, FlowKey, OutcomeKey, Point
from schemas.events import (
    ButtonPressed,
    ConversationAbandoned,
    ConversationCompleted,
    EdgeChosen,
    Event,
    LeadCaptured,
    QuestionAnswered,
    WentBack,
)
from services.conversation.state import typed_answer

DEFAULT_HORIZON_SECONDS = 24 * 3600.0
DEFAULT_IDLE_SECONDS = 30 * 60.0


class Ending(NamedTuple):
    """How a conversation's outcome became final: a success or a failure, and
    whether it was abandoned (the ledger then watches for a late lead)."""

    success: bool
    abandoned: bool = False


WINDOW_CLOSED = Ending(success=False)
ABANDONED = Ending(success=False, abandoned=True)


def ending_of(event: Event) -> Ending | None:
    """The outcome an event of an open conversation makes final, None if it makes
    none: a lead, a completion, or the flow's ``abandon_after``."""
    if isinstance(event, LeadCaptured):
        return Ending(success=True)
    if isinstance(event, ConversationCompleted):
        return Ending(success=event.lead_captured)
    if isinstance(event, ConversationAbandoned):  # the flow's abandon_after
        return ABANDONED
    return None


@dataclass
class OpenConversation:
    """A conversation whose outcome is not final yet."""

    flow: FlowKey
    started_at: float
    cell: str
    last_at: float  # its newest event's time: it is abandoned ``idle`` seconds later
    decisions: dict[Point, OutcomeKey] = field(default_factory=dict)  # the first per point
    seq: int = 1  # the newest event seq observed: older or equal ones are duplicates
    answers: list[tuple[str, str]] = field(default_factory=list)  # buttons pressed so far
    seen: dict[Point, Answers] = field(default_factory=dict)  # answers at each decision
    answer_seqs: list[int] = field(default_factory=list)  # the event seq of each answer
    decided_seq: dict[Point, int] = field(default_factory=dict)  # of each counted decision
    withdrawn: list[tuple[OutcomeKey, Answers]] = field(default_factory=list)  # gone back from


def ending_before(conv: OpenConversation, at: float, horizon: float, idle: float) -> Ending | None:
    """How the conversation was over before an event of it at ``at``: its window
    closed, or it had been idle for ``idle`` seconds; None if it was not."""
    if at >= conv.started_at + horizon:
        return WINDOW_CLOSED
    if at - conv.last_at >= idle:
        return ABANDONED
    return None


@dataclass(frozen=True, slots=True)
class FinalOutcome:
    """A final outcome waiting for the conversations that started before it."""

    started_at: float
    decisions: tuple[OutcomeKey, ...]
    success: bool
    answers: tuple[Answers, ...] = ()  # per decision, as its decision saw them
    withdrawn: tuple[tuple[OutcomeKey, Answers], ...] = ()  # failures, whatever the outcome


def final_outcome(conv: OpenConversation, success: bool) -> FinalOutcome:
    """The conversation's outcome, final: its decisions, the answers each saw and
    the decisions it went back from."""
    points = list(conv.decisions)
    return FinalOutcome(
        conv.started_at,
        tuple(conv.decisions[p] for p in points),
        success,
        tuple(conv.seen.get(p, ()) for p in points),
        tuple(conv.withdrawn),
    )


def trials(final: FinalOutcome) -> list[tuple[OutcomeKey, Answers, bool]]:
    """What a final outcome counts, in order: each decision gone back from (a
    failure), then each decision with the outcome and the answers it saw."""
    return [
        *((key, answers, False) for key, answers in final.withdrawn),
        *(
            (key, final.answers[i] if i < len(final.answers) else (), final.success)
            for i, key in enumerate(final.decisions)
        ),
    ]


def logged_cell(features: tuple[str, ...]) -> str | None:
    """The key of the cell a decision logged, None if it logged none (or not a cell)."""
    if not features:
        return None
    try:
        return cell_from_labels(features).key
    except ValueError:
        return None


def followed(conv: OpenConversation, event: Event) -> None:
    """Fold in an event of an open conversation that does not end it: an answer,
    a decision, a go back."""
    if isinstance(event, ButtonPressed):
        conv.answers.append((event.node_id, event.button_id))
        conv.answer_seqs.append(event.seq)
    elif isinstance(event, QuestionAnswered):  # as the decider passes it: no value
        conv.answers.append((event.node_id, typed_answer(event)))
        conv.answer_seqs.append(event.seq)
    elif isinstance(event, EdgeChosen):
        decided(conv, event)
    elif isinstance(event, WentBack):
        went_back(conv, event)


def decided(conv: OpenConversation, event: EdgeChosen) -> None:
    """A decision, counted at its point in its logged cell with the answers it saw
    (the ledger keeps the point's candidates)."""
    point = (event.node_id, event.button_id)
    if point in conv.decisions:
        return  # a loop back through the point: its first decision counts
    cell = logged_cell(event.features) or conv.cell
    conv.decisions[point] = OutcomeKey(event.node_id, event.button_id, event.chosen, cell)
    conv.seen[point] = tuple(conv.answers)
    conv.decided_seq[point] = event.seq


def went_back(conv: OpenConversation, event: WentBack) -> None:
    """The decisions after the re-opened step are rejected by the visitor: withdrawn
    (failures, counted with the conversation), their points free again; the
    answers after it are forgotten."""
    kept = event.withdrawn_seq
    for point, seq in list(conv.decided_seq.items()):
        if seq > kept:
            key, seen = conv.decisions.pop(point), conv.seen.pop(point, ())
            del conv.decided_seq[point]
            if all((k.node_id, k.button_id) != point for k, _ in conv.withdrawn):
                conv.withdrawn.append((key, seen))  # once per point: see the module doc
    while conv.answer_seqs and conv.answer_seqs[-1] > kept:
        conv.answer_seqs.pop()
        conv.answers.pop()
