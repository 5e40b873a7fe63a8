"""The event log -> one trajectory per conversation. Pure; a fold.

A trajectory is what off-policy evaluation needs of a conversation: the
decisions taken in it (decision point, candidates, the chosen edge, its logged
propensity, and the context cell the decision was conditioned on) and its
reward, defined as in :mod:`policy.rewards`: 1 if the conversation captured a
lead within ``horizon`` seconds of its start, else 0.

* The answers a decision saw are the ones the decider passed the policy
  (``DecisionPoint.answers``): the conversation's ``ButtonPressed`` events
  before the ``EdgeChosen``, in order, the press at the decision point itself
  last (it comes right before the decision in the log; a log without it gets it
  appended). A candidate conditioned on earlier answers (a snapshot whose points
  know ``answer:{node}={button}`` features) is asked with them; without them it
  would be scored as if the visitor had answered nothing (biased wherever the
  best edge depends on an answer).
* The cell of a decision is the one it logged (``EdgeChosen.features``); when it
  logged none (the uniform policy logs none) it is the cell of the
  conversation's context at the decision's time, which is the cell a
  Thompson policy would have used there.
* A conversation counts only once its reward window closed: ``horizon`` seconds
  passed since its start by ``as_of`` (the end of what was read). Those started
  later are left out, *whatever* they did so far (counted in :attr:`Fold.open`,
  those with a lead so far in :attr:`Fold.open_with_lead`). Leaving out only
  those still without a lead, and keeping those that captured one or completed,
  selects on the outcome: a lead is final at once, its absence only when the
  window closes, so the recent conversations kept are mostly leads (a range
  ending "now" came out 2 to 5 points too high). Whether the window closed
  depends on the start time alone, never on the outcome.
* Going back (``WentBack``) forgets the presses after the re-opened step, as
  the decider does: a later decision saw the answers that stand. A decision the
  visitor went back from stays in the trajectory: its propensity is part of the
  path's probability (the going back was the visitor's answer to it), and the
  reward is the conversation's. (The reward ledger, which counts per decision,
  counts it as a failure instead: :mod:`policy.reward_conversations`.)
* Decisions taken after the reward was settled (after the lead, or after the
  horizon) are not counted, as in the reward ledger: they could not change it.
* Events of conversations whose start is not in the log are left out (counted).
* A logged propensity that is not a probability in (0, 1], or a chosen edge that
  is not a candidate, raises :class:`LogError`: such a log cannot be weighted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from policy.features import CELLS, cell_from_labels, cell_index
from policy.reward_conversations import DEFAULT_HORIZON_SECONDS
from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    QuestionAnswered,
    WentBack,
)
from services.conversation.state import typed_answer

_CELL_NUMBER = {cell: i for i, cell in enumerate(CELLS)}


class LogError(ValueError):
    """A logged decision that cannot be used for off-policy evaluation."""


@dataclass(frozen=True, slots=True)
class Decision:
    node_id: str
    button_id: str
    candidates: tuple[str, ...]
    chosen: int  # index into candidates
    propensity: float  # the logging policy's probability of the chosen edge
    cell: int  # index into policy.features.CELLS
    policy_version: str
    holdout: float = 0.0  # the holdout share of the snapshot that logged it (propensities.py)
    # the visitor's answers (node id, button id) so far, the press at this point last:
    # DecisionPoint.answers as the decider passed it
    answers: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.node_id, self.button_id)

    @property
    def held_propensity(self) -> float:
        """The chosen edge's probability in a conversation the snapshot held out."""
        if self.holdout <= 0.0:
            return self.propensity
        return 1.0 if self.chosen == 0 else 0.0

    @property
    def free_propensity(self) -> float:
        """... and in one it did not hold out: the logged propensity is
        ``holdout * held + (1 - holdout) * free``."""
        if self.holdout <= 0.0 or self.holdout >= 1.0:
            return self.propensity
        p = (self.propensity - self.holdout * self.held_propensity) / (1.0 - self.holdout)
        return min(max(p, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Trajectory:
    conversation_id: str
    flow_id: str
    flow_version: int
    started_at: float
    decisions: tuple[Decision, ...]
    reward: float  # 1.0: a lead within the horizon


@dataclass
class _Open:
    started: ConversationStarted
    decisions: list[Decision] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)  # every press so far
    answer_seqs: list[int] = field(default_factory=list)  # each press's event seq
    lead: bool = False
    completed: bool = False


@dataclass(frozen=True, slots=True)
class Fold:
    trajectories: tuple[Trajectory, ...]
    open: int  # conversations whose reward window had not closed by as_of, left out
    open_with_lead: int  # ... of which captured a lead so far (left out all the same)
    without_start: int  # conversations whose start is not in the log, left out
    late_decisions: int  # decisions after the reward was settled, not counted
    events: int


def logged_decision(
    event: EdgeChosen,
    context: VisitorContext,
    answers: tuple[tuple[str, str], ...] = (),
) -> Decision:
    """``event`` as a trajectory's decision; ``context``: the conversation's,
    ``answers``: its presses before the decision, in order (the press at the
    decision point is appended when it is not the last)."""
    where = (
        f"conversation {event.conversation_id} (seq {event.seq}) at"
        f" {event.node_id}/{event.button_id}"
    )
    p = event.propensity
    if not (isinstance(p, float | int) and math.isfinite(p) and 0.0 < p <= 1.0):
        raise LogError(
            f"{where}: logged propensity {p!r} of {event.chosen!r} is not in (0, 1]; a decision"
            " the logging policy could not have taken cannot be weighted"
        )
    if event.chosen not in event.candidates:
        raise LogError(f"{where}: chosen edge {event.chosen!r} is not a candidate")
    cell: int | None = None
    if event.features:
        try:
            cell = _CELL_NUMBER[cell_from_labels(event.features)]
        except ValueError:
            cell = None
    if cell is None:
        cell = cell_index(context, event.at)
    press = (event.node_id, event.button_id)
    if not answers or answers[-1] != press:
        answers = (*answers, press)
    return Decision(
        node_id=event.node_id,
        button_id=event.button_id,
        candidates=tuple(event.candidates),
        chosen=event.candidates.index(event.chosen),
        propensity=float(p),
        cell=cell,
        policy_version=event.policy_version,
        answers=answers,
    )


class TrajectoryFold:
    """Feed it events (in per-conversation order, conversations interleaved)
    with :meth:`observe`, then :meth:`result`."""

    def __init__(self, horizon_seconds: float = DEFAULT_HORIZON_SECONDS) -> None:
        self.horizon = horizon_seconds
        self._conversations: dict[str, _Open] = {}
        self._without_start: set[str] = set()
        self._previews: set[str] = set()  # the studio's preview conversations: skipped
        self._late = 0
        self._events = 0
        self.latest_event_at = 0.0

    def observe(self, events: Iterable[Event]) -> None:
        for event in events:
            self._events += 1
            self.latest_event_at = max(self.latest_event_at, event.at)
            if isinstance(event, ConversationStarted):
                if event.preview:
                    self._previews.add(event.conversation_id)
                else:
                    self._conversations[event.conversation_id] = _Open(event)
                continue
            conv = self._conversations.get(event.conversation_id)
            if conv is None:
                if event.conversation_id not in self._previews:
                    self._without_start.add(event.conversation_id)
                continue
            if isinstance(event, EdgeChosen):
                settled = conv.lead or event.at - conv.started.at > self.horizon
                if settled:
                    self._late += 1
                else:
                    conv.decisions.append(
                        logged_decision(event, conv.started.context, tuple(conv.answers))
                    )
            elif isinstance(event, ButtonPressed):
                conv.answers.append((event.node_id, event.button_id))
                conv.answer_seqs.append(event.seq)
            elif isinstance(event, QuestionAnswered):  # as the decider passes it: no value
                conv.answers.append((event.node_id, typed_answer(event)))
                conv.answer_seqs.append(event.seq)
            elif isinstance(event, WentBack):
                while conv.answer_seqs and conv.answer_seqs[-1] > event.withdrawn_seq:
                    conv.answer_seqs.pop()
                    conv.answers.pop()
            elif isinstance(event, LeadCaptured):
                if not conv.lead and event.at - conv.started.at <= self.horizon:
                    conv.lead = True
            elif isinstance(event, ConversationCompleted):
                conv.completed = True

    def result(self, as_of: float | None = None) -> Fold:
        """The trajectories whose reward window closed by ``as_of`` (default: the
        newest event's time), in order of their start."""
        now = self.latest_event_at if as_of is None else as_of
        done: list[Trajectory] = []
        still_open = open_with_lead = 0
        for cid, conv in self._conversations.items():
            start = conv.started
            if now - start.at < self.horizon:  # the window is open: lead or not
                still_open += 1
                open_with_lead += conv.lead
                continue
            done.append(
                Trajectory(
                    conversation_id=cid,
                    flow_id=start.flow_id,
                    flow_version=start.flow_version,
                    started_at=start.at,
                    decisions=tuple(conv.decisions),
                    reward=1.0 if conv.lead else 0.0,
                )
            )
        done.sort(key=lambda t: (t.started_at, t.conversation_id))
        return Fold(
            trajectories=tuple(done),
            open=still_open,
            open_with_lead=open_with_lead,
            without_start=len(self._without_start - set(self._conversations)),
            late_decisions=self._late,
            events=self._events,
        )


def fold(
    events: Iterable[Event],
    horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
    as_of: float | None = None,
) -> Fold:
    """:class:`TrajectoryFold` over ``events`` in one call."""
    folder = TrajectoryFold(horizon_seconds)
    folder.observe(events)
    return folder.result(as_of)
