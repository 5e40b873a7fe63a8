"""Fit time of the edge-selection model (``policy.model.fit_flow``) on 10k and 1M conversations.

``python -m bench.policy.fit`` (about 3 minutes) fits the hierarchical model
to aggregated counts (trials and successes per decision point, candidate edge
and context cell) worth 10,000 and 1,000,000 conversations of a synthetic
population with a known truth, on one core, and reports the fit times, the
sampler's diagnostics and how well the fits recover the true edge ranking.

The population: the decision points and candidates of a real example flow
(``examples/flows/solar-quote.yaml`` by default, through ``FlowCatalog`` and
``Flow.decision_points()``). Visitors fall into context cells with a skewed
traffic mix (mobile more than desktop, few tablets, quiet nights, 10% not
English). Each decision point is reached by a fixed share of conversations and
its candidates are taken uniformly (as by an exploring policy). The lead
probability at point ``p`` via edge ``e`` in cell ``c`` is
``sigmoid(a_p + edge_pe + (gamma + delta_pe) . x_c)``: per-point intercepts,
edge effects with a known best edge (it beats the second by at least 0.1 on
the logit scale), context effects shared by the flow and edge-specific ones
(so that the best edge differs between cells). Counts are drawn directly
(multinomial trials per cell and edge, binomial successes): their size does
not depend on the number of conversations, only on the cells seen.

Timing: the process is pinned to one CPU (``--no-pin`` to let it float). A
child process first fits the 10k counts with an empty PyTensor compile
directory: the *cold* compile (C code generated and built), reported apart
from its sampling. Then, in this process (warm compile cache), one untimed-in-
the-medians first fit, and ``--repeats`` fits of each size, alternating, with
different seeds; each fit's wall time is split into setup (model build, graph
rewrites and compile or cache load: what every fit pays) and sampling (NUTS,
``chains`` chains one after the other on one core). Medians over the repeats.

Targets (issue 5): median fit <= 30 s for each size, and the 1M fit within
1.5x of the 10k fit. Recovered ranking: per decision point, the edges ordered by
their posterior mean conversion (averaged over the traffic mix) against the true
order, and the share of posterior draws in which the true best edge is best.

Writes ``bench/results/policy_fit.json`` (``--out``) and the markdown table
beside it (``.md``). Exit status 1 when a fit was refused or a target missed.
"""

# This docstring is the --help text. The population and its counts are in
# bench/policy/fit_population.py; one timed fit, the cold compile and the summary
# of a size's fits in bench/policy/fit_runs.py; this module orders the fits,
# gathers the result (run) and writes it with its markdown table (report).

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.policy.fit_population import load_flow, make_counts, make_truth
from bench.policy.fit_runs import Config, FitRun, child_cold, cold_fit, one_fit, summarize
from bench.procstats import (
    Json,
    cpu_model,
    git_state,
    machine_cpu_seconds,
    process_cpu_seconds,
)

TARGET_SECONDS = 30.0
TARGET_RATIO = 1.5


def run(cfg: Config) -> Json:
    if cfg.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    started = time.monotonic()
    load = list(os.getloadavg())
    cold = cold_fit(cfg) if cfg.cold else {}
    print(f"cold compile: {cold}", file=sys.stderr)
    t = time.perf_counter()
    import pymc  # type: ignore[import-untyped]

    imported = time.perf_counter() - t
    truth = make_truth(load_flow(cfg.flow), cfg.seed)
    counts = {size: make_counts(truth, size, cfg.seed + size) for size in cfg.sizes}
    first = one_fit(cfg, truth, counts[min(cfg.sizes)], min(cfg.sizes), cfg.seed)
    print(f"first fit in process: {first.wall_seconds} s ({first.reason})", file=sys.stderr)
    runs: dict[int, list[FitRun]] = {size: [] for size in cfg.sizes}
    cpu0, machine0, t0 = process_cpu_seconds(os.getpid()), machine_cpu_seconds(), time.monotonic()
    for rep in range(cfg.repeats):
        order = list(cfg.sizes) if rep % 2 == 0 else list(reversed(cfg.sizes))
        for size in order:
            fit = one_fit(cfg, truth, counts[size], size, cfg.seed + 1 + rep)
            runs[size].append(fit)
            print(
                f"{size:>9,} conversations, repeat {rep + 1}: {fit.wall_seconds:.1f} s"
                f" (setup {fit.diagnostics.get('setup_seconds')} s, r-hat"
                f" {fit.diagnostics.get('rhat_max')}, ESS {fit.diagnostics.get('ess_bulk_min')},"
                f" {fit.diagnostics.get('divergences')} divergences) {fit.reason or 'published'}",
                file=sys.stderr,
            )
    wall = time.monotonic() - t0
    cpu1, machine1 = process_cpu_seconds(os.getpid()), machine_cpu_seconds()
    cores: Json = {}
    if cpu0 is not None and cpu1 is not None and machine0 is not None and machine1 is not None:
        cores = {
            "bench": round((cpu1 - cpu0) / wall, 2),
            "others": round(max(0.0, (machine1 - machine0) - (cpu1 - cpu0)) / wall, 2),
        }
    sizes = {str(size): summarize(r) for size, r in runs.items()}
    small, large = str(min(cfg.sizes)), str(max(cfg.sizes))
    ratio = sizes[large]["median_wall_seconds"] / sizes[small]["median_wall_seconds"]
    every = [f for r in runs.values() for f in r]
    return {
        "benchmark": "policy.fit",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": {
            "nproc": os.cpu_count(),
            "pinned_to_cpus": sorted(os.sched_getaffinity(0)),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pymc": pymc.__version__,
            "loadavg_at_start": load,
        },
        "git": git_state("policy", "bench/policy"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "model": {k: first.diagnostics.get(k) for k in ("draws", "tune", "chains", "max_rhat")}
        | {
            "min_ess_bulk": first.diagnostics.get("min_ess_bulk"),
            "points": first.diagnostics.get("points"),
            "snapshot_draws": first.diagnostics.get("snapshot_draws"),
        },
        "truth": {
            "points": [f"{a}/{b}" for a, b in truth.points],
            "reach": [round(float(v), 3) for v in truth.reach],
            "edge_effects": [[round(float(v), 3) for v in e] for e in truth.edge],
        },
        "compile": {
            "cold_child_process": cold,
            "import_pymc_seconds": round(imported, 3),
            "first_fit_in_process": {
                "wall_seconds": first.wall_seconds,
                "setup_seconds": first.diagnostics.get("setup_seconds"),
                "sampling_seconds": first.diagnostics.get("sampling_seconds"),
                "published": first.published,
            },
        },
        "cores": cores,
        "sizes": sizes,
        "runs": {str(size): [asdict(f) | {"ranking": None} for f in r] for size, r in runs.items()},
        "targets": {
            "seconds": TARGET_SECONDS,
            "ratio": TARGET_RATIO,
            "measured_ratio": round(ratio, 3),
            "each_within_seconds": all(
                s["median_wall_seconds"] <= TARGET_SECONDS for s in sizes.values()
            ),
            "ratio_ok": ratio <= TARGET_RATIO,
            "all_published": all(f.published for f in every),
        },
    }


def report(result: Json) -> str:
    cfg, model, sizes = result["config"], result["model"], result["sizes"]
    m = result["machine"]
    lines = [
        "# Policy model fit time",
        "",
        f"`python -m bench.policy.fit`, {result['timestamp']}: {m['cpu_model'] or 'unknown CPU'},"
        f" pinned to 1 of {m['nproc']} cores, Python {m['python']}, PyMC {m['pymc']};"
        f" flow `{cfg['flow']}` ({model['points']} decision points), NUTS {model['chains']}"
        f" chains x ({model['tune']} tune + {model['draws']} draws) one after the other,"
        f" {cfg['repeats']} repeats per size (medians; the range in brackets).",
        "",
        "| counts worth | trials | rows (point, edge, cell) | fit s | setup s | sampling s"
        " | CPU / wall | max r-hat | min bulk ESS | divergences | published |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, s in sizes.items():
        walls = s["wall_seconds"]
        lines.append(
            f"| {int(size):,} conversations | {s['trials']:,} | {s['rows']:,} |"
            f" **{s['median_wall_seconds']:.1f}** ({min(walls):.1f}-{max(walls):.1f}) |"
            f" {s['median_setup_seconds']:.1f} | {s['median_sampling_seconds']:.1f} |"
            f" {s['median_cpu_per_wall']:.2f} | {s['rhat_max']:.4f} | {s['ess_bulk_min']:,.0f} |"
            f" {s['divergences']} | {s['published']}/{s['fits']} |"
        )
    t = result["targets"]
    ok = t["each_within_seconds"] and t["ratio_ok"] and t["all_published"]
    comp = result["compile"]
    cold = comp["cold_child_process"]
    first = comp["first_fit_in_process"]
    lines += [
        "",
        f"Targets: each <= {t['seconds']:.0f} s on one core:"
        f" **{'PASS' if t['each_within_seconds'] else 'FAIL'}**; largest / smallest"
        f" = **{t['measured_ratio']:.2f}x** (<= {t['ratio']}x:"
        f" {'PASS' if t['ratio_ok'] else 'FAIL'}); every fit published:"
        f" {'yes' if t['all_published'] else 'NO'}. Overall: **{'PASS' if ok else 'FAIL'}**.",
        "",
        "Compile, apart from sampling: "
        + (
            f"a new process with an empty PyTensor cache pays {cold['import_pymc_seconds']:.1f} s"
            f" to import PyMC and {cold['setup_seconds']:.1f} s of setup (C code generated and"
            f" built) before {cold['sampling_seconds']:.1f} s of sampling; "
            if cold and "error" not in cold
            else ""
        )
        + f"with a warm cache, the import takes {comp['import_pymc_seconds']:.1f} s and the first"
        f" fit's setup {first['setup_seconds']:.1f} s. Every fit's setup (model build, graph"
        " rewrites, compiled modules loaded) is in the table's setup column.",
    ]
    cores = result["cores"]
    if cores:
        lines.append(
            f"\nCores during the repeats: bench {cores['bench']}, everything else on the"
            f" machine {cores['others']} (load average at start"
            f" {', '.join(f'{v:.2f}' for v in m['loadavg_at_start'])})."
        )
    lines += [
        "",
        "Recovered vs true edge ranking (each edge's lead probability over the traffic mix:"
        " true, and the posterior mean and 90% interval from the first published fit of each"
        " size; observed: the raw rate in the 10k counts, all cells pooled; share of the"
        " snapshot's draws in which the true best edge is best):",
        "",
        "| decision point | true | observed | "
        + " | ".join(f"{int(s):,}: posterior" for s in sizes)
        + " | "
        + " | ".join(f"{int(s):,}: best's share" for s in sizes)
        + " | order right |",
        "|---|---|---|" + "---|" * (2 * len(sizes)) + "---|",
    ]
    rankings = {s: v["ranking"] for s, v in sizes.items()}
    first_size = next(iter(sizes))
    for i, row in enumerate(rankings[first_size]):
        true = ", ".join(
            f"{c} {p:.3f}" for c, p in zip(row["candidates"], row["true"], strict=True)
        )
        posts, shares, oks = [], [], []
        for s in sizes:
            r = rankings[s][i] if i < len(rankings[s]) else None
            if r is None:
                posts.append("-")
                shares.append("-")
                continue
            posts.append(
                ", ".join(
                    f"{p:.3f} [{lo:.3f}, {hi:.3f}]"
                    for p, (lo, hi) in zip(r["posterior_mean"], r["posterior_90"], strict=True)
                )
            )
            shares.append(f"{r['true_best_win_share']:.2f}")
            oks.append("yes" if r["order_ok"] else "no")
        seen = ", ".join(f"{p:.3f}" for p in row["observed"])
        lines.append(
            f"| {row['point']} | {true} | {seen} | "
            + " | ".join(posts)
            + " | "
            + " | ".join(shares)
            + f" | {'/'.join(oks)} |"
        )
    every = all(s["ranking_ok_in_every_fit"] for s in sizes.values())
    published = sum(s["published"] for s in sizes.values())
    lines.append(
        f"\nThe recovered order matches the true one in every published fit ({published}):"
        f" {'yes' if every and published else 'no'}."
    )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> tuple[Config, bool]:
    p = argparse.ArgumentParser(
        prog="python -m bench.policy.fit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Config()
    p.add_argument("--flow", default=d.flow, help="example flow id (examples/flows)")
    p.add_argument(
        "--sizes",
        default=",".join(str(s) for s in d.sizes),
        help="conversations the counts are worth, comma-separated",
    )
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--draws", type=int, default=None, help="per chain (fit_flow's default)")
    p.add_argument("--tune", type=int, default=None)
    p.add_argument("--chains", type=int, default=None)
    p.add_argument("--no-cold", action="store_true", help="skip the cold-compile child process")
    p.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--child-cold", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    cfg = Config(
        flow=a.flow,
        sizes=tuple(int(s) for s in a.sizes.split(",")),
        repeats=a.repeats,
        seed=a.seed,
        draws=a.draws,
        tune=a.tune,
        chains=a.chains,
        cold=not a.no_cold,
        pin=not a.no_pin,
        out=a.out,
    )
    return cfg, bool(a.child_cold)


def main(argv: list[str] | None = None) -> int:
    cfg, child = parse(argv)
    if child:
        return child_cold(cfg)
    result = run(cfg)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(result, indent=2) + "\n")
    table = report(result)
    cfg.out.with_suffix(".md").write_text(table)
    print(table)
    t = result["targets"]
    return 0 if (t["each_within_seconds"] and t["ratio_ok"] and t["all_published"]) else 1


if __name__ == "__main__":
    sys.exit(main())
