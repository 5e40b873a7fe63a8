"""``python -m policy.sim``: the edge-selection simulation (docs/policy-simulation.md).

``--world NAME`` picks the population (baseline, interactions, answers, drift,
sparse; default baseline), ``--fast`` a smoke run (1,500 conversations, two tiny
fits). Prints the fits as they happen (stderr) and the markdown tables and the
world's metrics (stdout); writes bench/results/policy_sim_<world>.json and
docs/img/policy-regret-<world>.png. ``--seeds 7 8 9 10`` runs the world once
per seed and reports each seed's metrics with their mean and a 95% interval
over the seeds (bench/results/policy_sim_<world>_seeds.json; no figure).
Seeded: the same arguments give the same visitors, the same decisions and the
same leads (PyMC's sampler is seeded too; its timings vary).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

import orjson

from policy.sim import seeds
from policy.sim.config import BETWEEN_FITS, SimConfig, WorkerFitter
from policy.sim.report import fits_table, markdown_table, metrics, metrics_text, plot
from policy.sim.results import code_fingerprint, to_json
from policy.sim.runner import SimResult, simulate
from policy.sim.solar import load_flow
from policy.sim.worlds import WORLDS, world

ROOT = Path(__file__).resolve().parents[2]


def default_json(name: str) -> Path:
    return ROOT / "bench" / "results" / f"policy_sim_{name}.json"


def default_png(name: str) -> Path:
    return ROOT / "docs" / "img" / f"policy-regret-{name}.png"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="python -m policy.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--world", choices=list(WORLDS), default="baseline")
    p.add_argument(
        "--fast", action="store_true", help="smoke run: few conversations, two tiny fits"
    )
    p.add_argument("--conversations", type=int, help="default: the world's (--fast: 1,500)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run once per seed and report the metrics over the seeds (instead of --seed)",
    )
    p.add_argument(
        "--edge-scale", type=float, help="multiplies every edge effect (on top of the world's)"
    )
    # the schedule and the sampler: by default the full run's (or --fast's)
    p.add_argument("--first-fit", type=int, help="conversations before the first fit")
    p.add_argument("--refit-every", type=int)
    p.add_argument(
        "--between-fits",
        choices=list(BETWEEN_FITS),
        default=d.between_fits,
        help="between fits: the online learner (production's default), conjugate updates,"
        " or nothing",
    )
    p.add_argument(
        "--update-every",
        type=int,
        help="publish between fits every N conversations (0: never; default 250)",
    )
    p.add_argument(
        "--half-life",
        type=float,
        help="the online learner's half-life in conversations (LEADFLOW_POLICY_HALF_LIFE;"
        " default the production default)",
    )
    p.add_argument(
        "--pairs",
        choices=("on", "off"),
        help="the online learner's context interactions (default the production default)",
    )
    p.add_argument(
        "--change-half-life",
        type=float,
        help="the change detector's shadow learner's half-life (0: no detector)",
    )
    p.add_argument("--change-threshold", type=float, help="the detector's CUSUM threshold, nats")
    p.add_argument(
        "--pair-ard",
        choices=("on", "off"),
        help="learn each pair of factors' prior scale per point (ARD) and publish the pairs"
        " whose scale stays at or above 0.05, instead of the evidence test (default the"
        " production default)",
    )
    p.add_argument(
        "--draw-scale", type=float, help="the published draws' spread (1: plain Thompson sampling)"
    )
    p.add_argument(
        "--online-before-fit",
        choices=("on", "off"),
        help="publish the learner before the run's first fit, once it has 100 outcomes"
        " (production fits first at 100 outcomes; default on)",
    )
    p.add_argument("--draws", type=int, help="posterior draws per chain")
    p.add_argument("--tune", type=int)
    p.add_argument("--chains", type=int)
    p.add_argument("--min-exploration", type=float)
    # by default fit_flow's own sampler settings and acceptance checks (production's)
    p.add_argument("--target-accept", type=float, help="NUTS target acceptance")
    p.add_argument("--max-rhat", type=float, help="refuse a fit whose r-hat is above")
    p.add_argument("--min-ess", type=float, help="refuse a fit whose bulk ESS is below")
    p.add_argument("--max-divergences", type=int, help="refuse a fit with more")
    p.add_argument(
        "--fit-worker",
        action="store_true",
        help="fit in the policy service's worker process (ProcessFitter), not in this one",
    )
    p.add_argument(
        "--json", type=Path, help="results (default bench/results/policy_sim_<world>.json)"
    )
    p.add_argument(
        "--png", type=Path, help="the figure (default docs/img/policy-regret-<world>.png)"
    )
    return p.parse_args(argv)


def config_of(args: argparse.Namespace) -> SimConfig:
    """The world's run (or --fast's), with the options given on the command line."""
    w = world(args.world)
    if args.fast:
        config = SimConfig.fast(args.conversations or w.fast_conversations, args.seed)
    else:
        config = SimConfig(conversations=args.conversations or w.conversations, seed=args.seed)
    given = {
        "edge_scale": args.edge_scale,
        "first_fit": args.first_fit,
        "refit_every": args.refit_every,
        "update_every": args.update_every,
        "between_fits": args.between_fits,
        "half_life": args.half_life,
        "pairs": None if args.pairs is None else args.pairs == "on",
        "change_half_life": args.change_half_life,
        "change_threshold": args.change_threshold,
        "draw_scale": args.draw_scale,
        "pair_ard": None if args.pair_ard is None else args.pair_ard == "on",
        "online_before_fit": None
        if args.online_before_fit is None
        else args.online_before_fit == "on",
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "min_exploration": args.min_exploration,
        "target_accept": args.target_accept,
        "max_rhat": args.max_rhat,
        "min_ess": args.min_ess,
        "max_divergences": args.max_divergences,
    }
    return dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, config: SimConfig) -> SimResult:
    """One run of ``args.world`` with ``config`` (its seed included)."""
    population = world(args.world).build(load_flow(), config.conversations)
    if config.edge_scale != 1.0:
        population = dataclasses.replace(
            population, edge_scale=population.edge_scale * config.edge_scale
        )
    worker = WorkerFitter(population, config) if args.fit_worker else None
    try:
        return simulate(population, config, fitter=worker, world=args.world, log=log)
    finally:
        if worker is not None:
            worker.close()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    config = config_of(args)
    command = shlex.join(["python", "-m", "policy.sim", *(sys.argv[1:] if argv is None else argv)])
    if args.seeds:
        return main_seeds(args, config, command)
    args.json = args.json or default_json(args.world)
    args.png = args.png or default_png(args.world)
    result = run(args, config)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(to_json(result, command) + b"\n")
    plot(result, args.png)
    print(markdown_table(result))
    print()
    print(metrics_text(result))
    print()
    print(fits_table(result))
    print(
        f"\n{config.conversations:,} conversations in {result.seconds:.0f} s"
        f" ({result.fit_seconds:.0f} s in {len(result.fits)} fits,"
        f" {result.conjugate_updates} publications between fits ({config.between_fits});"
        f" {result.learn_seconds:.0f} s in the online learner); wrote {args.json} and {args.png}"
    )
    return 0


def main_seeds(args: argparse.Namespace, config: SimConfig, command: str) -> int:
    """``--seeds``: the world once per seed, then the metrics over the seeds."""
    rows = []
    for seed in args.seeds:
        result = run(args, dataclasses.replace(config, seed=seed))
        rows.append(seeds.seed_row(seed, metrics(result)))
        log(f"seed {seed}: {rows[-1]}")
    summary = seeds.summarise(rows, changes=result.flip_at is not None)
    doc = {
        "world": args.world,
        "command": command,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "seed"},
        "code": code_fingerprint(),
        "seeds": rows,
        "summary": summary,
    }
    path = args.json or default_json(f"{args.world}_seeds")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(seeds.markdown(args.world, rows, summary))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
