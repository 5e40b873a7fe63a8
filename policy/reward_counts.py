"""The reward ledger's counts (:mod:`policy.rewards`): what a counted outcome adds. Pure.

Outcomes are counted per (decision point, candidate edge, context cell),
:class:`OutcomeKey`: the sufficient statistics of the model, whose size depends
on the flow and the cells, never on the number of conversations. One flow
version's are a :class:`FlowCounts`, its flow version a :class:`FlowKey`.

Each counted decision is also a :class:`DecisionOutcome`: the visitor's cell
and the answers the decision saw, which the cell tallies cannot hold (the
ledger keeps them for the online learner, :mod:`policy.rewards`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from policy.features import CELLS, cell_from_key

_CELL_NUMBER = {cell.key: i for i, cell in enumerate(CELLS)}


class FlowKey(NamedTuple):
    flow_id: str
    flow_version: int


class OutcomeKey(NamedTuple):
    node_id: str
    button_id: str
    edge: str
    cell: str  # Cell.key


@dataclass
class Tally:
    trials: int = 0
    successes: int = 0


@dataclass
class FlowCounts:
    """Outcomes of one flow version's decisions, and each decision point's candidates."""

    candidates: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    tallies: dict[OutcomeKey, Tally] = field(default_factory=dict)
    conversations: int = 0  # conversations with at least one decision, resolved

    def add(self, key: OutcomeKey, success: bool) -> None:
        tally = self.tallies.setdefault(key, Tally())
        tally.trials += 1
        tally.successes += int(success)

    def trials(self) -> int:
        return sum(t.trials for t in self.tallies.values())

    def since(self, earlier: FlowCounts) -> FlowCounts:
        """The outcomes added after ``earlier`` (a copy taken at the last fit)."""
        delta = FlowCounts(dict(self.candidates), {}, self.conversations - earlier.conversations)
        for key, tally in self.tallies.items():
            before = earlier.tallies.get(key, Tally())
            if tally.trials > before.trials:
                delta.tallies[key] = Tally(
                    tally.trials - before.trials, tally.successes - before.successes
                )
        return delta

    def copy(self) -> FlowCounts:
        return FlowCounts(
            dict(self.candidates),
            {k: Tally(t.trials, t.successes) for k, t in self.tallies.items()},
            self.conversations,
        )


Point = tuple[str, str]  # (node_id, button_id): a decision point
Answers = tuple[tuple[str, str], ...]  # (question node, button) pressed, in order


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """One counted decision: the edge taken at a point, the cell it was counted in
    (an index into :data:`~policy.features.CELLS`), the conversation's answers
    when it was taken (the press at the point itself last) and the outcome."""

    conversation_id: str
    node_id: str
    button_id: str
    edge: str
    cell: int
    answers: Answers
    success: bool


def cell_number(key: str) -> int:
    """The index into :data:`~policy.features.CELLS` of a cell's key (``Cell.key``);
    a key that names no cell raises :class:`ValueError`."""
    cell = _CELL_NUMBER.get(key)
    if cell is None:
        cell = _CELL_NUMBER[cell_from_key(key).key]
    return cell


def decision_outcome(
    conversation_id: str, key: OutcomeKey, answers: Answers, success: bool
) -> DecisionOutcome:
    """The counted decision ``key`` of a conversation, its cell numbered."""
    cell = cell_number(key.cell)
    return DecisionOutcome(
        conversation_id, key.node_id, key.button_id, key.edge, cell, answers, success
    )
