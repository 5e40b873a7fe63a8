"""The run of ``python -m bench.policy.decision``: the timing loops over the four
arms and the untimed re-check of every Thompson decision's propensity.

Contract: :func:`run` takes a :class:`~bench.policy.decision_inputs.Config` and
returns the whole result as JSON (machine, git state, config, per-repeat
percentiles, their medians, install times, answers-cache hit rates, checks and
the target); :mod:`bench.policy.decision` writes it and renders the table.

Why it is built this way: each call is timed alone with ``time.perf_counter_ns``
(the clock's own cost is measured and reported, not subtracted), the arms
alternate first and last between repeats so that no arm always runs first, the
garbage collector stays on as in a processor but the pre-built decision points
are frozen out of its scans, and the propensity check (:func:`check_decisions`)
runs after the timing so it costs the timed calls nothing. Percentiles are
nearest rank per repeat.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.policy.decision_inputs import (
    ANSWER_BUTTONS,
    ANSWER_QUESTIONS,
    ANSWER_SHARES,
    FLOW_ID,
    FLOW_VERSION,
    POINT_KS,
    TIME_ZONES,
    Config,
    answered,
    build_snapshot,
    decision_points,
    visitor_contexts,
    with_answers,
)
from bench.procstats import (
    Json,
    cpu_model,
    git_state,
    machine_cpu_seconds,
    process_cpu_seconds,
)
from policy.features import FEATURE_NAMES, cell_index
from policy.point_policy import ANSWER_KEYS_CACHED
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from services.policy_port import DecisionPoint, EdgeChoice

TARGET_P99_US = 50.0
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99_9", 0.999))


def time_calls(
    choose: Callable[[DecisionPoint], EdgeChoice], points: Sequence[DecisionPoint]
) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * len(points)
    for i, point in enumerate(points):
        t0 = clock()
        choose(point)
        samples[i] = clock() - t0
    return samples


def timer_overhead_ns(n: int = 100_000) -> int:
    """Median cost of the two clock reads around a call (not subtracted)."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        samples.append(clock() - t0)
    return int(statistics.median(samples))


def percentiles_us(samples_ns: Sequence[int]) -> Json:
    ordered = sorted(samples_ns)
    n = len(ordered)
    out: Json = {"count": n, "mean_us": round(sum(ordered) / n / 1e3, 3)}
    for name, q in PERCENTILES:
        out[f"{name}_us"] = round(ordered[max(0, math.ceil(q * n) - 1)] / 1e3, 3)
    out["max_us"] = round(ordered[-1] / 1e3, 3)
    return out


def check_decisions(
    policy: ThompsonPolicy, points: Sequence[DecisionPoint], choices: Sequence[EdgeChoice]
) -> Json:
    """Logged propensities against ``distribution``, and choice counts against them."""
    mismatches: list[str] = []
    observed: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    expected: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for point, choice in zip(points, choices, strict=True):
        dist = policy.distribution(point)
        if dist is None:
            mismatches.append(f"{point.conversation_id}: no distribution")
            continue
        probs = dist.probabilities()
        key = (point.node_id, point.button_id)
        observed[key][choice.chosen] += 1
        for edge, p in zip(point.candidates, probs, strict=True):
            expected[key][edge] += p
        logged = probs[point.candidates.index(choice.chosen)]
        if logged != choice.propensity and len(mismatches) < 10:
            mismatches.append(
                f"{point.conversation_id}/{point.command_seq}: logged {choice.propensity},"
                f" distribution gives {logged}"
            )
    worst_z = 0.0
    for key, edges in expected.items():
        n = sum(observed[key].values())
        for edge, mean in edges.items():
            p = mean / n
            sd = math.sqrt(n * p * (1 - p)) or 1.0
            worst_z = max(worst_z, abs(observed[key][edge] - mean) / sd)
    return {
        "decisions": len(choices),
        "propensity_mismatches": mismatches,
        "max_abs_z": round(worst_z, 2),
        "ok": not mismatches and worst_z < 5.0,
    }


def run(cfg: Config) -> Json:
    rng = np.random.default_rng(cfg.seed)
    rnd = random.Random(cfg.seed)
    contexts = visitor_contexts(rnd, cfg.contexts)
    uniform = UniformPolicy()
    overhead = timer_overhead_ns()
    runs: dict[str, list[Json]] = {
        "thompson": [],
        "uniform": [],
        "thompson_answers": [],
        "thompson_answers_cold": [],
    }
    hit_rates: list[float] = []
    key_hit_rates: list[float] = []
    installs_us: list[float] = []
    checks: list[Json] = []
    gc_collections = 0
    cpu0, machine0, t0 = process_cpu_seconds(os.getpid()), machine_cpu_seconds(), time.monotonic()
    for rep in range(cfg.repeats):
        snapshot = build_snapshot(cfg, rng, f"{FLOW_ID}@{FLOW_VERSION}#{rep + 1}")
        points = decision_points(rnd, cfg.decisions, snapshot, contexts)
        answering = with_answers(snapshot, rng)
        warm = [answered(rnd, p) for p in decision_points(rnd, cfg.decisions, snapshot, contexts)]
        timed = [answered(rnd, p) for p in points]
        gc.collect()
        gc.freeze()
        policy = ThompsonPolicy()
        started = time.perf_counter_ns()
        if not policy.install(snapshot):
            raise SystemExit("the snapshot was not installed")
        installs_us.append((time.perf_counter_ns() - started) / 1e3)
        answers_policy = ThompsonPolicy()
        answers_policy.install(answering)
        for p in warm:
            answers_policy.choose(p)
        seen = {(cell_index(p.context, p.at), p.node_id, p.answers) for p in warm}
        hits = sum((cell_index(p.context, p.at), p.node_id, p.answers) in seen for p in timed)
        hit_rates.append(hits / len(timed))
        seen_keys = {(p.node_id, p.answers) for p in warm}
        key_hit_rates.append(sum((p.node_id, p.answers) in seen_keys for p in timed) / len(timed))
        # right after a hot swap: every key's first decision builds it
        cold_policy = ThompsonPolicy()
        cold_policy.install(answering)
        arms = {
            "thompson": (policy.choose, points),
            "uniform": (uniform.choose, points),
            "thompson_answers": (answers_policy.choose, timed),
            "thompson_answers_cold": (cold_policy.choose, timed),
        }
        order = tuple(arms) if rep % 2 == 0 else tuple(reversed(arms))
        for name in order:
            collections = sum(s["collections"] for s in gc.get_stats())
            choose, calls = arms[name]
            samples = time_calls(choose, calls)
            if name == "thompson":
                gc_collections += sum(s["collections"] for s in gc.get_stats()) - collections
            runs[name].append(percentiles_us(samples))
        choices = [policy.choose(p) for p in points]
        checks.append(check_decisions(policy, points, choices))
        answer_choices = [answers_policy.choose(p) for p in timed]
        checks.append(check_decisions(answers_policy, timed, answer_choices))
        gc.unfreeze()
        del points, choices, warm, timed, answer_choices
    wall = time.monotonic() - t0
    cpu1, machine1 = process_cpu_seconds(os.getpid()), machine_cpu_seconds()
    cores: Json = {}
    if None not in (cpu0, cpu1, machine0, machine1):
        assert cpu0 is not None and cpu1 is not None
        assert machine0 is not None and machine1 is not None
        cores = {
            "bench": round((cpu1 - cpu0) / wall, 2),
            "others": round(max(0.0, (machine1 - machine0) - (cpu1 - cpu0)) / wall, 2),
        }
    medians = {
        name: {
            key: round(statistics.median(r[key] for r in reps), 3)
            for key in reps[0]
            if key != "count"
        }
        for name, reps in runs.items()
    }
    p99s = [r["p99_us"] for r in runs["thompson"]]
    answer_p99s = [r["p99_us"] for r in runs["thompson_answers"]]
    return {
        "benchmark": "policy.decision",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(wall, 1),
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "loadavg_at_start": list(os.getloadavg()),
        },
        "git": git_state("policy", "bench/policy"),
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "points_k": list(POINT_KS),
            "answer_features": ANSWER_QUESTIONS * ANSWER_BUTTONS,
            "answer_shares": list(ANSWER_SHARES),
            "answer_keys_cached": ANSWER_KEYS_CACHED,
            "features": len(FEATURE_NAMES),
            "time_zones": list(TIME_ZONES),
        },
        "timer_overhead_ns": overhead,
        "cores": cores,
        "gc_collections_during_thompson_runs": gc_collections,
        "install_us": {
            "runs": [round(v, 1) for v in installs_us],
            "median": round(statistics.median(installs_us), 1),
        },
        "runs": runs,
        "medians": medians,
        "ratio_p50_thompson_to_uniform": round(
            medians["thompson"]["p50_us"] / medians["uniform"]["p50_us"], 2
        ),
        "answers_warm_hit_rate": [round(h, 4) for h in hit_rates],
        "answers_warm_key_hit_rate": [round(h, 4) for h in key_hit_rates],
        "checks": checks,
        "checks_ok": all(c["ok"] for c in checks),
        "target": {
            "p99_us": TARGET_P99_US,
            "measured_median_p99_us": medians["thompson"]["p99_us"],
            "worst_repeat_p99_us": max(p99s),
            "pass": medians["thompson"]["p99_us"] <= TARGET_P99_US,
            "answers_measured_median_p99_us": medians["thompson_answers"]["p99_us"],
            "answers_worst_repeat_p99_us": max(answer_p99s),
            "answers_pass": medians["thompson_answers"]["p99_us"] <= TARGET_P99_US,
        },
    }
