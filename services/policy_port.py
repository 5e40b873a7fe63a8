"""The policy port: how the decider asks which edge to take at a decision point.

A policy is a pure function of the decision point (and whatever posterior
snapshot the implementation holds): the same point always yields the same
choice, so reprocessing a command after a crash repeats the decision exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from schemas.commands import VisitorContext


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionPoint:
    conversation_id: str
    command_seq: int
    flow_id: str
    flow_version: int
    node_id: str
    button_id: str
    candidates: tuple[str, ...]
    context: VisitorContext
    answers: tuple[tuple[str, str], ...] = ()
    at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeChoice:
    """``chosen`` is one of the candidates; ``propensity`` the probability the
    policy gave it, in (0, 1]; ``seed`` the seed of the RNG that drew it."""

    chosen: str
    propensity: float
    policy_version: str
    seed: int
    features: tuple[str, ...] = ()  # the visitor context the choice was conditioned on


class EdgePolicy(Protocol):
    def choose(self, point: DecisionPoint) -> EdgeChoice: ...
