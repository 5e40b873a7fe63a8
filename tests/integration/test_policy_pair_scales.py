"""Learnt pair scales (policy/relevance.py, ``OnlineConfig.pair_ard``): a point keeps the
scale of the pair of factors that matters there and shrinks the others; in a world
without interactions every pair shrinks; a step keeps what the data said; a learner
with learnt scales publishes the model with pairs at every point (a faded pair at 0,
left out of the snapshot exactly) and has no additive twin.
(8,000 outcomes through a 109-weight learner, twice: about 1 s.)"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from policy import pair_design
from policy.archive import archive_body, expand, is_compact
from policy.features import CELLS, FEATURE_NAMES, PAIR_INDEX, PAIR_NAMES, Cell
from policy.laplace import EdgeGaussian
from policy.online import OnlineLearner
from policy.online_config import OnlineConfig, Outcome
from policy.online_publishing import PUBLISHED_PAIR_SD, point_gaussian, published_pairs
from policy.relevance import relevance_step, with_scales
from policy.settings import PRODUCTION_ONLINE
from policy.snapshot import decode_snapshot, encode_snapshot
from policy.thompson import ThompsonPolicy

KEY = ("q", "b")
EDGES = ("x", "y")
DEVICE_SOURCE = pair_design.FACTOR_PAIRS.index(
    (Cell._fields.index("device"), Cell._fields.index("source"))
)
F = len(FEATURE_NAMES)
CONFIG = OnlineConfig(half_life=math.inf, pairs=True, pair_ard=True)


def _outcomes(rng: np.random.Generator, n: int, interaction: bool) -> list[Outcome]:
    """y wins for mobile x paid and desktop x search, loses for mobile x search and
    desktop x paid (no main effects); without ``interaction`` y is simply better
    on phones (an additive effect)."""
    rows = []
    for i in range(n):
        c = int(rng.integers(len(CELLS)))
        cell = CELLS[c]
        edge = EDGES[int(rng.integers(2))]
        if interaction:
            plus = (cell.device, cell.source) in (("mobile", "paid"), ("desktop", "search"))
            minus = (cell.device, cell.source) in (("mobile", "search"), ("desktop", "paid"))
            effect = 1.5 if plus else -1.5 if minus else 0.0
        else:
            effect = 0.8 if cell.device == "mobile" else -0.4
        logit = -1.0 + (effect if edge == "y" else 0.0)
        lead = bool(rng.random() < 1.0 / (1.0 + math.exp(-logit)))
        rows.append(Outcome(f"c{i}", KEY[0], KEY[1], edge, c, (KEY,), lead))
    return rows


def _learn(interaction: bool) -> OnlineLearner:
    learner = OnlineLearner("f", 1, {KEY: EDGES}, CONFIG)
    rows = _outcomes(np.random.default_rng(5), 8_000, interaction)
    for start in range(0, len(rows), 400):
        learner.observe(rows[start : start + 400])
    return learner


def test_the_pair_that_matters_keeps_its_scale_and_the_others_shrink() -> None:
    scales = _learn(interaction=True).points[KEY].pair_sd
    assert len(scales) == len(pair_design.PAIR_BLOCKS)
    others = [sd for g, sd in enumerate(scales) if g != DEVICE_SOURCE]
    assert scales[DEVICE_SOURCE] > CONFIG.pair_sd  # grown: the data need it
    assert max(others) < CONFIG.pair_sd / 2  # shrunk toward the additive model
    assert scales[DEVICE_SOURCE] > 4 * max(others)


def test_without_interactions_every_pair_shrinks() -> None:
    scales = _learn(interaction=False).points[KEY].pair_sd
    assert max(scales) < CONFIG.pair_sd / 2
    assert min(scales) >= CONFIG.pair_sd_bounds[0]


def test_a_step_keeps_what_the_data_said_and_swaps_only_the_prior() -> None:
    rng = np.random.default_rng(3)
    size = pair_design.SIZE
    q0 = np.diag(pair_design.prior_precision(1.5, 0.5, 0.3))
    edges = []
    for _ in range(2):
        a = rng.normal(size=(size, size)) * 0.1
        data = a @ a.T + np.eye(size)  # some data precision
        edges.append(EdgeGaussian(q0 + data, rng.normal(size=size)))
    before = [(e.q - q0, e.h.copy()) for e in edges]
    sds = [0.3] * len(pair_design.PAIR_BLOCKS)
    learnt = relevance_step(edges, pair_design.PAIR_BLOCKS, sds, (0.02, 1.0))
    assert learnt != sds and all(0.02 <= sd <= 1.0 for sd in learnt)
    q0_new = with_scales(q0.copy(), pair_design.PAIR_BLOCKS, learnt)
    for edge, (data, h) in zip(edges, before, strict=True):
        np.testing.assert_allclose(edge.q - q0_new, data, atol=1e-9)
        np.testing.assert_array_equal(edge.h, h)
    # the intercept and the levels keep their prior
    np.testing.assert_array_equal(np.diag(q0_new)[: 1 + pair_design.LEVELS], np.diag(q0)[:17])


def test_learnt_scales_publish_pairs_everywhere_without_an_additive_twin() -> None:
    assert PRODUCTION_ONLINE.pair_ard and PRODUCTION_ONLINE.pairs
    learner = _learn(interaction=False)
    assert learner.additive is None and learner.pair_evidence == {}
    assert learner.uses_pairs(KEY)
    snapshot = learner.snapshot("v1", 1.0)
    assert snapshot.points[KEY].pairs  # published with pairs though the evidence is not weighed
    weighed = OnlineLearner("f", 1, {KEY: EDGES}, dataclasses.replace(CONFIG, pair_ard=False))
    assert weighed.additive is not None and not weighed.uses_pairs(KEY)
    assert weighed.points[KEY].pair_sd == []  # the fixed pair_sd: nothing learnt


def test_forgetting_and_a_change_keep_the_learnt_scales_in_the_prior() -> None:
    """Forgetting moves the posterior toward the point's own prior (its learnt
    scales), so a long-forgotten posterior is that prior, not the configured one."""
    learner = _learn(interaction=True)
    point = learner.points[KEY]
    learner.config = dataclasses.replace(learner.config, half_life=1.0)
    learner.forget(200)  # 2^-200 of the evidence left
    q0, _ = learner.point_prior(point, len(point.edges["x"].h))
    np.testing.assert_allclose(point.edges["x"].q, q0, atol=1e-9)
    block = pair_design.PAIR_BLOCKS[DEVICE_SOURCE]
    assert q0[block[0], block[0]] == 1.0 / point.pair_sd[DEVICE_SOURCE] ** 2


def test_a_pair_whose_scale_fell_is_left_out_of_the_snapshot_exactly() -> None:
    """A pair of factors whose learnt scale is under PUBLISHED_PAIR_SD is published
    at 0: the snapshot omits its pair slopes, and every cell's published mean logit
    is the learner's with that pair's weights conditioned to 0."""
    learner = _learn(interaction=True)
    point = learner.points[KEY]
    names, dropped = published_pairs(point.pair_sd)
    assert point.pair_sd[DEVICE_SOURCE] >= PUBLISHED_PAIR_SD  # the pair that matters stays
    assert dropped and all(sd < PUBLISHED_PAIR_SD for sd in _dropped_scales(point.pair_sd))
    assert names and len(names) < len(PAIR_NAMES)
    gaussian = point_gaussian(learner, KEY)
    assert gaussian.pairs == names
    published = pair_design.PUBLISHED[
        :, [0, *range(1, 1 + F), *(1 + F + PAIR_INDEX[n] for n in names)]
    ]
    for e, edge_id in enumerate(EDGES):
        edge = point.edges[edge_id]
        kept = [c for c in range(len(edge.h)) if not any(a <= c < b for a, b in dropped)]
        conditional = np.zeros(len(edge.h))
        conditional[kept] = np.linalg.solve(edge.q[np.ix_(kept, kept)], edge.h[kept])
        want = pair_design.ROWS @ conditional[: pair_design.SIZE]  # every cell's logit
        got = published @ gaussian.mean[e][: published.shape[1]]
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_a_pruned_snapshot_archives_compactly_and_decides() -> None:
    learner = _learn(interaction=False)
    snapshot = learner.snapshot("v9", 2.0)
    assert len(snapshot.points[KEY].pairs) < len(PAIR_NAMES)
    data = encode_snapshot(snapshot)
    body = archive_body(snapshot, data)
    assert is_compact(body) and expand(body) == data
    policy = ThompsonPolicy()
    assert policy.install(decode_snapshot(data))
    assert policy.snapshots["f"].points[KEY].pairs == snapshot.points[KEY].pairs


def _dropped_scales(scales: list[float]) -> list[float]:
    return [sd for sd in scales if sd < PUBLISHED_PAIR_SD]
