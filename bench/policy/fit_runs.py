"""One timed fit of the edge-selection model, the cold compile, and their summary.

``python -m bench.policy.fit`` times ``policy.model.fit_flow`` on the counts of
bench/policy/fit_population.py. This module holds what a single fit is asked and
what it answers, so that the entry point (bench/policy/fit.py) only orders the
fits and reports them:

* ``Config``: the benchmark's settings, as the command line gives them;
* ``one_fit``: one ``fit_flow`` call, its wall and CPU seconds, the sampler's
  diagnostics as ``fit_flow`` reports them (setup and sampling seconds among
  them), and ``recovered``: per decision point, the true, observed (``observed``)
  and posterior conversion of each edge over the traffic mix, the true and the
  recovered order, and the true best edge's share of the posterior draws;
* ``cold_fit`` and ``child_cold``: the cold compile is measured in a child
  process (``python -m bench.policy.fit --child-cold``) with an empty PyTensor
  compile directory, as only a new process with an empty cache pays it;
  ``cold_fit`` starts that child and reads the JSON line ``child_cold`` prints;
* ``summarize``: the medians and extremes of a size's fits (rounded to the
  millisecond), which the result's ``sizes`` and the markdown table show.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.policy.fit_population import PointKey, Truth, load_flow, make_counts, make_truth
from bench.procstats import Json
from policy.reward_counts import FlowCounts
from policy.snapshot import PolicySnapshot

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "policy_fit.json"


@dataclass(frozen=True, slots=True)
class Config:
    flow: str = "solar-quote"
    sizes: tuple[int, ...] = (10_000, 1_000_000)
    repeats: int = 3
    seed: int = 5
    draws: int | None = None  # None: fit_flow's defaults
    tune: int | None = None
    chains: int | None = None
    cold: bool = True
    pin: bool = True
    out: Path = DEFAULT_OUT


def observed(counts: FlowCounts, key: PointKey, edge: str) -> float:
    """The raw lead rate of an edge in the counts (all cells pooled)."""
    n = y = 0
    for outcome, tally in counts.tallies.items():
        if (outcome.node_id, outcome.button_id, outcome.edge) == (key[0], key[1], edge):
            n += tally.trials
            y += tally.successes
    return y / n if n else float("nan")


def recovered(truth: Truth, snapshot: PolicySnapshot, counts: FlowCounts) -> list[Json]:
    """Per decision point: true, observed and posterior conversion of each edge over
    the traffic mix, the orders, and the true best edge's share of the draws."""
    rows = []
    for p, key in enumerate(truth.points):
        posterior = snapshot.points[key]
        base = posterior.base.astype(np.float64)  # (S, k)
        slopes = posterior.slopes.astype(np.float64)  # (S, k, F)
        eta = base[:, :, None] + np.einsum("skf,cf->skc", slopes, truth.cell_x)
        draws = (1.0 / (1.0 + np.exp(-eta))) @ truth.mix  # (S, k)
        true = truth.average(p)
        mean = draws.mean(axis=0)
        best = int(np.argmax(true))
        wins = np.bincount(np.argmax(draws, axis=1), minlength=len(true)) / len(draws)
        rows.append(
            {
                "point": f"{key[0]}/{key[1]}",
                "candidates": list(truth.candidates[p]),
                "true": [round(float(v), 4) for v in true],
                "observed": [round(observed(counts, key, c), 4) for c in truth.candidates[p]],
                "posterior_mean": [round(float(v), 4) for v in mean],
                "posterior_90": [
                    [round(float(lo), 4), round(float(hi), 4)]
                    for lo, hi in zip(
                        np.quantile(draws, 0.05, axis=0),
                        np.quantile(draws, 0.95, axis=0),
                        strict=True,
                    )
                ],
                "true_order": [truth.candidates[p][i] for i in np.argsort(-true)],
                "recovered_order": [truth.candidates[p][i] for i in np.argsort(-mean)],
                "order_ok": bool(np.array_equal(np.argsort(-true), np.argsort(-mean))),
                "true_best_win_share": round(float(wins[best]), 3),
            }
        )
    return rows


@dataclass
class FitRun:
    size: int
    seed: int
    published: bool
    reason: str | None
    wall_seconds: float
    cpu_seconds: float
    diagnostics: Json = field(default_factory=dict)
    ranking: list[Json] = field(default_factory=list)


def one_fit(cfg: Config, truth: Truth, counts: FlowCounts, size: int, seed: int) -> FitRun:
    from policy.model import fit_flow

    kwargs: dict[str, Any] = {
        k: v for k, v in (("draws", cfg.draws), ("tune", cfg.tune), ("chains", cfg.chains)) if v
    }
    cpu0 = time.process_time()
    started = time.perf_counter()
    result = fit_flow(
        cfg.flow, 1, counts, version=f"{cfg.flow}@1#bench-{size}-{seed}", seed=seed, **kwargs
    )
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    return FitRun(
        size=size,
        seed=seed,
        published=result.snapshot is not None,
        reason=result.reason,
        wall_seconds=round(wall, 3),
        cpu_seconds=round(cpu, 3),
        diagnostics=dict(result.diagnostics),
        ranking=[] if result.snapshot is None else recovered(truth, result.snapshot, counts),
    )


def cold_fit(cfg: Config) -> Json:
    """One 10k fit in a child process with an empty PyTensor compile directory."""
    with tempfile.TemporaryDirectory(prefix="pytensor-cold-") as compiledir:
        env = dict(os.environ)
        flags = env.get("PYTENSOR_FLAGS", "")
        env["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags, f"compiledir={compiledir}"]))
        argv = [sys.executable, "-m", "bench.policy.fit", "--child-cold", "--flow", cfg.flow]
        argv += ["--seed", str(cfg.seed), "--sizes", str(min(cfg.sizes))]
        for name in ("draws", "tune", "chains"):
            value = getattr(cfg, name)
            if value:
                argv += [f"--{name}", str(value)]
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
        )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-5:]}
    result: Json = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def child_cold(cfg: Config) -> int:
    started = time.perf_counter()
    import pymc  # type: ignore[import-untyped]  # noqa: F401  (timed: what a fit worker pays once)

    imported = time.perf_counter() - started
    truth = make_truth(load_flow(cfg.flow), cfg.seed)
    size = min(cfg.sizes)
    run = one_fit(cfg, truth, make_counts(truth, size, cfg.seed + size), size, cfg.seed)
    print(
        json.dumps(
            {
                "import_pymc_seconds": round(imported, 3),
                "size": size,
                "published": run.published,
                "wall_seconds": run.wall_seconds,
                "setup_seconds": run.diagnostics.get("setup_seconds"),
                "sampling_seconds": run.diagnostics.get("sampling_seconds"),
            }
        )
    )
    return 0


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3)


def summarize(runs: list[FitRun]) -> Json:
    d = [r.diagnostics for r in runs]
    return {
        "fits": len(runs),
        "published": sum(r.published for r in runs),
        "wall_seconds": [r.wall_seconds for r in runs],
        "median_wall_seconds": _median([r.wall_seconds for r in runs]),
        "median_setup_seconds": _median([x.get("setup_seconds", float("nan")) for x in d]),
        "median_sampling_seconds": _median([x.get("sampling_seconds", float("nan")) for x in d]),
        "median_cpu_per_wall": _median([r.cpu_seconds / r.wall_seconds for r in runs]),
        "rhat_max": max(x.get("rhat_max", float("nan")) for x in d),
        "ess_bulk_min": min(x.get("ess_bulk_min", float("nan")) for x in d),
        "divergences": sum(int(x.get("divergences", 0)) for x in d),
        "leapfrog_steps_mean": _median([x.get("leapfrog_steps_mean", float("nan")) for x in d]),
        "rows": d[0].get("rows"),
        "cells": d[0].get("cells"),
        "trials": d[0].get("trials"),
        "successes": d[0].get("successes"),
        "reasons": sorted({r.reason for r in runs if r.reason}),
        "ranking_ok_in_every_fit": all(
            all(row["order_ok"] for row in r.ranking) for r in runs if r.published
        ),
        "ranking": next((r.ranking for r in runs if r.published), []),
    }
