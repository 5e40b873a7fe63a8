"""``python -m policy.sim``: the edge-selection simulation (docs/policy-simulation.md).

Prints the fits as they happen (stderr) and the markdown table (stdout); writes
the JSON results and the regret figure. Seeded: the same arguments give the
same visitors, the same decisions and the same leads (PyMC's sampler is seeded
too; its timings vary).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from policy.sim.population import load_flow, solar_quote
from policy.sim.report import fits_table, markdown_table, plot, to_json
from policy.sim.runner import SimConfig, simulate

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JSON = ROOT / "bench" / "results" / "policy_sim.json"
DEFAULT_PNG = ROOT / "docs" / "img" / "policy-regret.png"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    d = SimConfig()
    p = argparse.ArgumentParser(prog="python -m policy.sim", description=__doc__)
    p.add_argument("--conversations", type=int, default=d.conversations)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--edge-scale", type=float, default=d.edge_scale, help="multiplies every edge effect"
    )
    p.add_argument("--first-fit", type=int, default=d.first_fit, help="conversations before it")
    p.add_argument("--refit-every", type=int, default=d.refit_every)
    p.add_argument(
        "--update-every", type=int, default=d.update_every, help="conjugate updates (0: none)"
    )
    p.add_argument("--draws", type=int, default=d.draws, help="posterior draws per chain")
    p.add_argument("--tune", type=int, default=d.tune)
    p.add_argument("--chains", type=int, default=d.chains)
    p.add_argument("--min-exploration", type=float, default=d.min_exploration)
    # by default fit_flow's own sampler settings and acceptance checks (production's)
    p.add_argument("--target-accept", type=float, help="NUTS target acceptance")
    p.add_argument("--max-rhat", type=float, help="refuse a fit whose r-hat is above")
    p.add_argument("--min-ess", type=float, help="refuse a fit whose bulk ESS is below")
    p.add_argument("--max-divergences", type=int, help="refuse a fit with more")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results (JSON)")
    p.add_argument("--png", type=Path, default=DEFAULT_PNG, help="the regret figure")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    config = SimConfig(
        conversations=args.conversations,
        seed=args.seed,
        edge_scale=args.edge_scale,
        first_fit=args.first_fit,
        refit_every=args.refit_every,
        update_every=args.update_every,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        min_exploration=args.min_exploration,
        target_accept=args.target_accept,
        max_rhat=args.max_rhat,
        min_ess=args.min_ess,
        max_divergences=args.max_divergences,
    )
    population = solar_quote(load_flow(), edge_scale=config.edge_scale)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = simulate(population, config, log=log)
    command = shlex.join(["python", "-m", "policy.sim", *(sys.argv[1:] if argv is None else argv)])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(to_json(result, command) + b"\n")
    plot(result, args.png)
    print(markdown_table(result))
    print()
    print(fits_table(result))
    print(
        f"\n{config.conversations:,} conversations in {result.seconds:.0f} s"
        f" ({result.fit_seconds:.0f} s in {len(result.fits)} fits,"
        f" {result.conjugate_updates} conjugate updates); wrote {args.json} and {args.png}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
