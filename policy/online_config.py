"""What the online learner is configured with and what it learns from. Pure.

:class:`OnlineConfig`: the prior, the forgetting, the context pairs and their
scales, the change detector and the published draws (production's values:
:data:`policy.settings.PRODUCTION_ONLINE`). :class:`Outcome`: one decision's final
outcome as the reward ledger hands it over (:mod:`policy.online`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PointKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class OnlineConfig:
    """The prior, the forgetting and the size of what is published."""

    half_life: float = 1000.0  # conversations; math.inf: no forgetting
    prior_mean_logit: float = -1.5  # about 18% leads
    intercept_sd: float = 1.5
    slope_sd: float = 0.5
    draws: int = 200
    max_answers: int = 64  # answer features per decision point
    min_answer_support: int = 5  # outcomes with the answer before it is published
    pairs: bool = False  # context interactions (PAIR_NAMES) as features (snapshot v4)
    pair_sd: float = 0.3  # each combination's prior sd (policy.pair_design: shrinkage)
    # change detection: a shadow learner with this half-life (0: none) and a CUSUM of
    # its predictive log-likelihood over this learner's, per point, in nats
    change_half_life: float = 0.0
    change_threshold: float = 15.0
    # the published draws' spread: N(m, (draw_scale * sd)^2); 1 is Thompson sampling
    # on the posterior, below 1 a sharpened posterior (less exploration on top of the
    # guardrails' floor, which alone keeps every edge learned)
    draw_scale: float = 1.0
    # with pairs: each point learns each pair of factors' prior scale (policy.relevance,
    # starting from pair_sd, within pair_sd_bounds) and publishes the model with pairs
    # (the faded ones at 0), instead of weighing it against an additive twin
    pair_ard: bool = False
    pair_sd_bounds: tuple[float, float] = (0.02, 1.0)

    def discount(self, conversations: int) -> float:
        if conversations <= 0 or math.isinf(self.half_life):
            return 1.0
        return float(2.0 ** (-conversations / self.half_life))

    @property
    def horizon(self) -> float:
        """Conversations after which a flipped best edge is firmly preferred again."""
        return 2.0 * self.half_life


@dataclass(frozen=True, slots=True)
class Outcome:
    """One decision's final outcome: the edge taken at a point, the visitor's
    cell (an index into :data:`~policy.features.CELLS`), the conversation's
    answers as the decision saw them (``DecisionPoint.answers``; the press at
    the point itself, if last, is dropped) and whether it ended in a lead."""

    conversation_id: str
    node_id: str
    button_id: str
    edge: str
    cell: int
    answers: tuple[tuple[str, str], ...]
    success: bool

    @property
    def point(self) -> PointKey:
        return (self.node_id, self.button_id)
