"""``python -m bench.policy.learner``: CPU per batch the online learner takes.

The fit schedule hands the learner each tick's final outcomes as one batch
(:meth:`policy.online.OnlineLearner.observe`). This times ``observe`` on batches
of random outcomes at six decision points of two edges each, every outcome with
three earlier answers, with the production config (pairs, the change detector)
and the plain one, as CPU time of this process, which runs numpy as the services
do (one BLAS thread unless ``OPENBLAS_NUM_THREADS`` is set: ``bench/policy/__init__.py``),
and the memory a flow's learner holds (:func:`learner_bytes`).

    python -m bench.policy.learner [--batch 350] [--batches 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from policy.features import CELLS
from policy.online import OnlineLearner
from policy.online_config import OnlineConfig, Outcome, PointKey
from policy.settings import PRODUCTION_ONLINE

POINTS: dict[PointKey, tuple[str, ...]] = {
    (f"n{i}", f"b{j}"): ("e1", "e2") for i in range(3) for j in range(2)
}
ANSWERS = [(f"q{k}", f"a{m}") for k in range(4) for m in range(3)]


def batch(rng: random.Random, size: int, first: int) -> list[Outcome]:
    out = []
    for n in range(first, first + size):
        node, button = rng.choice(list(POINTS))
        answers = (*rng.sample(ANSWERS, 3), (node, button))
        edge = rng.choice(("e1", "e2"))
        cell = rng.randrange(len(CELLS))
        out.append(Outcome(f"c{n}", node, button, edge, cell, answers, rng.random() < 0.3))
    return out


def ms_per_batch(config: OnlineConfig, size: int, batches: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    learner = OnlineLearner("f", 1, POINTS, config)
    work = [batch(rng, size, i * size) for i in range(batches + 2)]
    for warm in work[:2]:  # the answers registered, the matrices at their size
        learner.observe(warm)
    times = []
    for b in work[2:]:
        started = time.process_time()
        learner.observe(b)
        times.append((time.process_time() - started) * 1000)
    return times


def learner_bytes(learner: OnlineLearner) -> int:
    """The bytes of the learner's Gaussians (precision matrices and their h), its
    change detector's shadow included: what a flow's learner holds in memory."""
    total = sum(
        edge.q.nbytes + edge.h.nbytes
        for point in learner.points.values()
        for edge in point.edges.values()
    )
    return total + (learner_bytes(learner.shadow) if learner.shadow is not None else 0)


def memory(config: OnlineConfig, size: int, seed: int) -> dict[str, int]:
    """A learner's bytes once its answer features are registered: the bench's flow
    (12 answers, three per outcome), and the same flow at the cap of answers per
    point (``max_answers``)."""
    rng = random.Random(seed)
    learner = OnlineLearner("f", 1, POINTS, config)
    for i in range(2):
        learner.observe(batch(rng, size, i * size))
    capped = OnlineLearner("f", 1, POINTS, config)
    everything = [(f"q{k}", f"a{k}") for k in range(config.max_answers)]
    models = [capped] if capped.shadow is None else [capped, capped.shadow]
    for model in models:
        for key, point in model.points.items():
            model.register(point, everything)
            assert len(point.answers) == config.max_answers, key
    return {
        "points": len(POINTS),
        "edges": sum(len(c) for c in POINTS.values()),
        "bytes": learner_bytes(learner),
        "bytes_at_answer_cap": learner_bytes(capped),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.policy.learner")
    parser.add_argument("--batch", type=int, default=350, help="outcomes per batch (350)")
    parser.add_argument("--batches", type=int, default=10, help="timed batches (10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    for name, config in (("production", PRODUCTION_ONLINE), ("plain", OnlineConfig())):
        times = ms_per_batch(config, args.batch, args.batches, args.seed)
        rows[name] = {
            "median_ms": statistics.median(times),
            "max_ms": max(times),
            "memory": memory(config, args.batch, args.seed),
        }
    print(json.dumps({"batch": args.batch, "batches": args.batches, "configs": rows}, indent=2))
    print(
        f"\n| config | ms of CPU per batch of {args.batch} (median) | max | memory per flow"
        f" ({len(POINTS)} points of two edges) | at the answers cap |\n|---|--:|--:|--:|--:|"
    )
    for name, row in rows.items():
        mem = row["memory"]
        print(
            f"| {name} | {row['median_ms']:.1f} | {row['max_ms']:.1f}"
            f" | {mem['bytes'] / 1e6:.2f} MB | {mem['bytes_at_answer_cap'] / 1e6:.2f} MB |"
        )


if __name__ == "__main__":
    main()
