"""The simulator's worlds: visitor populations with a known truth, by name. Pure.

Each world is the solar-quote population of :func:`~policy.sim.solar.solar_quote`
(its traffic, contexts, answers, context and answer effects) with other edge
effects, built for a number of conversations (the ``drift`` world changes halfway):

* ``baseline``: the population of docs/policy-simulation.md, edge x context
  slopes (additive in the features the model has);
* ``interactions``: the better edge depends on *products* of context levels
  (device x source, source x hour, ...) whose additive parts are small;
* ``answers``: a hidden visitor type (``keen`` or ``wary``) drives both the
  answers (roof, bill, battery, shading, timeframe) and which edge is better, so
  the answers given before a decision carry what the context does not;
* ``drift``: the baseline, whose every edge effect changes sign at the middle
  visitor (the better edge flips everywhere);
* ``sparse``: the baseline's pattern shrunk to about a point of lead probability
  on a tenth of the traffic (120 visitors a day): there is little to win and
  the goal is to do no harm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from policy.sim.conversations import PointKey
from policy.sim.population import EdgeEffect, Population
from policy.sim.solar import solar_quote
from schemas.flow import Flow

Build = Callable[[Flow, int], Population]


@dataclass(frozen=True, slots=True)
class World:
    name: str
    summary: str
    build: Build  # (flow, conversations) -> population
    conversations: int  # the full run's
    fast_conversations: int  # --fast


def product(
    scale: float, first: Mapping[str, float], second: Mapping[str, float]
) -> dict[tuple[str, str], float]:
    """``scale * first[a] * second[b]`` for every pair of labels: an interaction
    whose sign pattern no sum of one-factor slopes reproduces."""
    return {(a, b): scale * x * y for a, x in first.items() for b, y in second.items() if x * y}


# the better edge's sign by level: chosen so that the visitor-weighted mean of each
# score is near 0, i.e. the interaction has small additive (main) effects
DEVICE_SIGN = {"device=mobile": 1.0, "device=desktop": -1.5, "device=tablet": 0.5}
SOURCE_SIGN = {
    "source=paid": 1.0,
    "source=social": 1.0,
    "source=email": 0.5,
    "source=search": -1.0,
    "source=direct": -0.5,
    "source=other": -0.5,
}
HOUR_SIGN = {"hour=evening": 1.0, "hour=afternoon": -0.8, "hour=morning": -0.8}
LANGUAGE_SIGN = {"language=other": 1.0, "language=en": -0.15}


def _baseline(flow: Flow, conversations: int) -> Population:
    return solar_quote(flow)


def _interactions(flow: Flow, conversations: int) -> Population:
    base = solar_quote(flow)
    effects: dict[PointKey, dict[str, EdgeEffect]] = {
        ("property", "house"): {
            "bill": EdgeEffect(0.0, interactions=product(0.8, DEVICE_SIGN, SOURCE_SIGN))
        },
        ("bill", "mid"): {
            "timeframe": EdgeEffect(0.0, interactions=product(-0.7, SOURCE_SIGN, HOUR_SIGN))
        },
        ("bill", "high"): {
            "shading": EdgeEffect(0.0, interactions=product(-0.8, DEVICE_SIGN, SOURCE_SIGN))
        },
        ("timeframe", "asap"): {
            "contact": EdgeEffect(0.0, interactions=product(0.8, DEVICE_SIGN, HOUR_SIGN))
        },
        ("timeframe", "researching"): {
            "contact_intro": EdgeEffect(
                -0.1,
                interactions={
                    **product(0.7, SOURCE_SIGN, LANGUAGE_SIGN),
                    **product(0.5, DEVICE_SIGN, {"language=en": 1.0, "language=other": -1.0}),
                },
            )
        },
    }
    return dataclasses.replace(base, edge_effects=effects)


KEEN = "keen"
WARY = "wary"


def _answers(flow: Flow, conversations: int) -> Population:
    base = solar_quote(flow)
    shares = {
        KEEN: {
            "roof": {"south": 0.5, "east_west": 0.35, "north": 0.1, "unsure": 0.05},
            "bill": {"low": 0.15, "mid": 0.45, "high": 0.4},
            "battery": {"yes": 0.65, "no": 0.25, "unsure": 0.1},
            "shading": {"none": 0.65, "some": 0.3, "heavy": 0.05},
            "timeframe": {"asap": 0.45, "months": 0.35, "researching": 0.2},
        },
        WARY: {
            "roof": {"south": 0.15, "east_west": 0.3, "north": 0.15, "unsure": 0.4},
            "bill": {"low": 0.35, "mid": 0.45, "high": 0.2},
            "battery": {"yes": 0.1, "no": 0.4, "unsure": 0.5},
            "shading": {"none": 0.3, "some": 0.4, "heavy": 0.3},
            "timeframe": {"asap": 0.15, "months": 0.3, "researching": 0.55},
        },
    }
    effects: dict[PointKey, dict[str, EdgeEffect]] = {
        # before it only "house" is known: a mild context effect, and asking about the
        # roof is what makes the later decisions learnable from the answers
        ("property", "house"): {"bill": EdgeEffect(-0.3, {"device=mobile": 0.4})},
        ("bill", "mid"): {
            "timeframe": EdgeEffect(
                0.0,
                kinds={KEEN: 0.8, WARY: -0.7},
                answers={("roof", "unsure"): -0.3, ("roof", "south"): 0.2},
            )
        },
        ("bill", "high"): {
            "shading": EdgeEffect(
                0.0, kinds={KEEN: -0.8, WARY: 0.9}, answers={("roof", "unsure"): 0.3}
            )
        },
        ("timeframe", "asap"): {
            "contact": EdgeEffect(
                0.0,
                kinds={KEEN: 0.8, WARY: -0.8},
                answers={("shading", "heavy"): -0.4, ("battery", "unsure"): -0.3},
            )
        },
        ("timeframe", "researching"): {
            "contact_intro": EdgeEffect(
                0.0,
                kinds={KEEN: 1.0, WARY: -0.9},
                answers={("battery", "yes"): 0.3, ("roof", "unsure"): -0.3},
            )
        },
    }
    return dataclasses.replace(
        base,
        edge_effects=effects,
        kinds={KEEN: 0.4, WARY: 0.6},
        kind_answer_shares=shares,
        kind_effects={KEEN: 0.4},
    )


def _drift(flow: Flow, conversations: int) -> Population:
    return dataclasses.replace(solar_quote(flow), flip_at=conversations // 2)


SPARSE_SCALE = 0.06  # the baseline's edge effects (up to ~1.3 logit) shrunk to ~1 point


def _sparse(flow: Flow, conversations: int) -> Population:
    return dataclasses.replace(solar_quote(flow, edge_scale=SPARSE_SCALE), arrivals_per_day=120.0)


WORLDS: dict[str, World] = {
    w.name: w
    for w in (
        World(
            "baseline",
            "edge x context slopes, additive in the model's features (docs/policy-simulation.md)",
            _baseline,
            50_000,
            1_500,
        ),
        World(
            "interactions",
            "the better edge follows products of context levels (device x source, ...)",
            _interactions,
            20_000,
            1_500,
        ),
        World(
            "answers",
            "a hidden visitor type drives the answers and the better edge",
            _answers,
            20_000,
            1_500,
        ),
        World(
            "drift",
            "the baseline, every edge effect changes sign at the middle visitor",
            _drift,
            20_000,
            1_500,
        ),
        World(
            "sparse",
            "the baseline's pattern shrunk to about a point, 120 visitors a day",
            _sparse,
            6_000,
            1_500,
        ),
    )
}


def world(name: str) -> World:
    try:
        return WORLDS[name]
    except KeyError:
        raise LookupError(f"no world {name!r}; the worlds are {', '.join(WORLDS)}") from None
