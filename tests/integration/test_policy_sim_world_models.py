"""The simulator's worlds (their true probability tables) and its simple baselines.

Guards the properties each world is built for (a world that silently lost its
point would make the simulator's tables meaningless) and the baselines' logic:
the Beta-Bernoulli arms learn per their key only, the oracle's path is the best
of every path.

The checks walk every world's table over thousands of visitors (compute-bound, no
I/O), so the module runs with the integration tier, not in the unit tier's 2 s.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

import pytest

from policy.features import CELLS, Cell
from policy.sim.baselines import BetaBernoulli, DefaultEdge, Oracle, answers_key, cell_key
from policy.sim.conversations import PointKey, Visitor
from policy.sim.population import Population
from policy.sim.solar import load_flow
from policy.sim.worlds import KEEN, SPARSE_SCALE, WARY, WORLDS, world
from schemas.commands import VisitorContext
from schemas.flow import Flow
from services.policy_port import DecisionPoint


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow()


def visitors(population: Population, n: int, seed: int = 5) -> list[Visitor]:
    return list(population.visitors(n, seed))


def point(
    *,
    conversation_id: str = "c-1",
    seq: int = 2,
    context: VisitorContext | None = None,
    answers: tuple[tuple[str, str], ...] = (("property", "house"),),
) -> DecisionPoint:
    return DecisionPoint(
        conversation_id=conversation_id,
        command_seq=seq,
        flow_id="solar-quote",
        flow_version=1,
        node_id="property",
        button_id="house",
        candidates=("roof", "bill"),
        context=context or VisitorContext(device="mobile"),
        answers=answers,
        at=1_772_460_000.0,
    )


# -- the worlds ------------------------------------------------------------------------------


def test_every_world_builds_reproducible_visitors(flow: Flow) -> None:
    for name, w in WORLDS.items():
        population = w.build(flow, 1_000)
        first = visitors(population, 50)
        again = visitors(w.build(flow, 1_000), 50)
        assert [v.conversation_id for v in first] == [v.conversation_id for v in again], name
        assert [v.answers for v in first] == [v.answers for v in again], name
    with pytest.raises(LookupError, match="baseline"):
        world("nowhere")


def test_baseline_keeps_the_documented_stream(flow: Flow) -> None:
    """No visitor type in the baseline: its stream (and today's docs) do not move."""
    population = world("baseline").build(flow, 50_000)
    assert not population.kinds and population.flip_at is None
    assert {v.kind for v in visitors(population, 200)} == {""}


def every_path(population: Population, v: Visitor) -> list[float]:
    """The lead probability of each of the (at most 8) paths through the flow."""
    out = []
    for mask in range(8):
        seen = itertools.count()

        def pick(p: DecisionPoint, _: Visitor, m: int = mask, n: Iterator[int] = seen) -> str:
            return p.candidates[(m >> next(n)) & 1]

        out.append(population.lead_probability(v, population.walk(v, pick)))
    return out


def test_oracle_path_is_the_best_of_every_path(flow: Flow) -> None:
    oracle = Oracle()
    for name in ("baseline", "answers", "interactions", "drift"):
        population = world(name).build(flow, 100)
        for v in visitors(population, 100):
            plan, best = population.best_path(v)
            assert best == pytest.approx(max(every_path(population, v))), name
            oracle.plan(plan)
            conversation = population.walk(v, lambda p, _: oracle.choose(p))
            assert population.lead_probability(v, conversation) == best


def effect(population: Population, key: PointKey, cell: Cell, **kw: object) -> float:
    other = population.flow.node(key[0]).button(key[1])
    assert other is not None
    return population.edge_logit(key, other.next[1], cell, **kw)  # type: ignore[arg-type]


def test_interactions_best_edge_needs_both_factors(flow: Flow) -> None:
    """Per decision point, neither device nor source (nor hour, language) alone decides
    the better edge: for some level of each factor, both edges are best somewhere."""
    population = world("interactions").build(flow, 1_000)
    for key in population.edge_effects:
        for factor in range(4):
            mixed = 0
            levels = {c[factor] for c in CELLS}
            for level in levels:
                signs = {effect(population, key, c) > 0 for c in CELLS if c[factor] == level}
                mixed += signs == {True, False}
            assert mixed >= 1, (key, Cell._fields[factor])
    key = ("property", "house")
    mobile_paid = Cell("mobile", "paid", "evening", "en")
    desktop_paid = Cell("desktop", "paid", "evening", "en")
    desktop_search = Cell("desktop", "search", "evening", "en")
    assert effect(population, key, mobile_paid) > 0.5
    assert effect(population, key, desktop_paid) < -0.5
    assert effect(population, key, desktop_search) > 0.5


def test_answers_world_type_drives_answers_and_the_better_edge(flow: Flow) -> None:
    population = world("answers").build(flow, 1_000)
    crowd = visitors(population, 2_500)
    by_kind = {k: [v for v in crowd if v.kind == k] for k in (KEEN, WARY)}
    assert 0.3 < len(by_kind[KEEN]) / len(crowd) < 0.5

    def share(kind: str, question: str, answer: str) -> float:
        group = by_kind[kind]
        return sum(v.answers[question] == answer for v in group) / len(group)

    assert share(KEEN, "roof", "unsure") < 0.1 < 0.3 < share(WARY, "roof", "unsure")
    assert share(KEEN, "battery", "yes") > 0.5 > 0.2 > share(WARY, "battery", "yes")
    # the context says nothing about the type ...
    mobile = [v.kind == KEEN for v in crowd if v.cell.device == "mobile"]
    desktop = [v.kind == KEEN for v in crowd if v.cell.device == "desktop"]
    assert abs(sum(mobile) / len(mobile) - sum(desktop) / len(desktop)) < 0.05
    # ... and the type flips the better edge in the same cell with the same answers
    cell = Cell("mobile", "search", "evening", "en")
    for key in (("bill", "mid"), ("bill", "high"), ("timeframe", "asap")):
        keen = effect(population, key, cell, kind=KEEN)
        wary = effect(population, key, cell, kind=WARY)
        assert keen * wary < 0, key
    shaded = [("shading", "heavy")]
    assert effect(population, ("timeframe", "asap"), cell, kind=KEEN, answered=shaded) < effect(
        population, ("timeframe", "asap"), cell, kind=KEEN
    )


def test_drift_flips_every_edge_at_the_middle(flow: Flow) -> None:
    population = world("drift").build(flow, 20_000)
    assert population.flip_at == 10_000
    for key in population.edge_effects:
        for cell in CELLS[::7]:
            before = effect(population, key, cell, index=9_999)
            after = effect(population, key, cell, index=10_000)
            assert after == -before


def test_sparse_effects_are_about_a_point(flow: Flow) -> None:
    population = world("sparse").build(flow, 6_000)
    assert population.edge_scale == SPARSE_SCALE
    assert population.arrivals_per_day < 200
    gaps = []
    for v in visitors(population, 300):
        paths = every_path(population, v)
        gaps.append(max(paths) - min(paths))
    assert max(gaps) < 0.05
    assert 0.003 < sum(gaps) / len(gaps) < 0.02


# -- the baselines ---------------------------------------------------------------------------


def test_default_edge_takes_the_first_candidate() -> None:
    assert DefaultEdge().choose(point()) == "roof"


def test_beta_bernoulli_learns_per_cell_only() -> None:
    arm = BetaBernoulli("cell_bb", cell_key, seed=1)
    mobile = VisitorContext(device="mobile")
    desktop = VisitorContext(device="desktop")
    for i in range(200):  # on phones "bill" always leads, "roof" never
        arm.learn([(point(context=mobile, conversation_id=f"a{i}"), "bill")], True)
        arm.learn([(point(context=mobile, conversation_id=f"b{i}"), "roof")], False)
    assert arm.posterior(point(context=mobile), "bill") == (201, 1)
    assert arm.keys() == 1
    picks = Counter(arm.choose(point(context=mobile, conversation_id=f"m{i}")) for i in range(200))
    assert picks["bill"] == 200
    # another cell has seen nothing: about half and half
    picks = Counter(arm.choose(point(context=desktop, conversation_id=f"d{i}")) for i in range(400))
    assert 150 < picks["bill"] < 250


def test_beta_bernoulli_per_answers_keys_on_every_answer_so_far() -> None:
    arm = BetaBernoulli("answers_bb", answers_key, seed=1)
    south = (("property", "house"), ("roof", "south"))
    unsure = (("property", "house"), ("roof", "unsure"))
    assert answers_key(point(answers=south)) != answers_key(point(answers=unsure))
    # the context does not enter the key
    assert answers_key(point(answers=south, context=VisitorContext(device="desktop"))) == (
        answers_key(point(answers=south))
    )
    # every decision of the conversation is credited with its outcome
    arm.learn([(point(answers=south), "bill"), (point(answers=unsure), "roof")], True)
    assert arm.posterior(point(answers=south), "bill") == (2, 1)
    assert arm.posterior(point(answers=unsure), "roof") == (2, 1)
    assert arm.posterior(point(answers=unsure), "bill") == (1, 1)


def test_beta_bernoulli_is_seeded_by_conversation_and_seq() -> None:
    arm = BetaBernoulli("cell_bb", cell_key, seed=3)
    choices = [arm.choose(point(conversation_id=f"c{i}")) for i in range(50)]
    assert choices == [arm.choose(point(conversation_id=f"c{i}")) for i in range(50)]
    other = BetaBernoulli("cell_bb", cell_key, seed=4)
    assert choices != [other.choose(point(conversation_id=f"c{i}")) for i in range(50)]


def test_oracle_follows_the_plan() -> None:
    oracle = Oracle()
    oracle.plan({("property", "house"): "bill"})
    assert oracle.choose(point()) == "bill"
    oracle.plan({})
    with pytest.raises(KeyError):
        oracle.choose(point())
