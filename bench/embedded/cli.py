"""Command line: ``python -m bench.embedded [--sweep] ...``; see ``bench/README.md``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from bench.embedded import report
from bench.embedded.phases import (
    DEFAULT_SWEEP_RATES,
    PhaseSettings,
    parse_range,
    parse_rates,
    select_phases,
    sweep_phases,
)
from bench.embedded.suite import Settings, run_suite

DEFAULT_OUT = Path("bench") / "results" / "embedded.json"
DEFAULT_PHASES = "human,busy,saturated"


def _phase_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--phases",
        default=None,
        help=f"phases to run, in order ({DEFAULT_PHASES}; none with --sweep unless given)",
    )
    add(
        "--human-think-ms",
        type=parse_range,
        default=(1000.0, 3000.0),
        metavar="MIN-MAX",
        help="think time of the human (target) phase, ms (1000-3000)",
    )
    add(
        "--busy-think-ms",
        type=parse_range,
        default=(50.0, 150.0),
        metavar="MIN-MAX",
        help="think time of the busy phase, ms (50-150)",
    )
    add(
        "--saturated-think-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="think time of the saturated phase, ms (0: the throughput ceiling)",
    )
    add(
        "--human-seconds",
        type=float,
        default=40.0,
        help="length of the human phase's Leadflow run, s (40)",
    )
    add(
        "--load-seconds",
        type=float,
        default=10.0,
        help="length of the busy and saturated phases' Leadflow runs, s (10)",
    )


def _sweep_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--sweep",
        action="store_true",
        help="run short phases at increasing offered rates; report the highest rate at "
        "which press-to-reply p99 stays within the target",
    )
    add(
        "--sweep-rates",
        type=parse_rates,
        default=list(DEFAULT_SWEEP_RATES),
        metavar="R1,R2,...",
        help="offered presses/s of the sweep steps (100,200,400,800)",
    )
    add(
        "--sweep-seconds",
        type=float,
        default=10.0,
        help="length of each sweep step's Leadflow run, s (10)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.embedded",
        description="End-to-end latency of `leadflow serve` against a bare aiohttp echo server.",
    )
    add = parser.add_argument
    add("--visitors", type=int, default=200, help="concurrent visitors (200)")
    _phase_options(parser)
    _sweep_options(parser)
    add("--seed", type=int, default=1, help="random seed of the visitors (1)")
    add("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results file ({DEFAULT_OUT})")
    add(
        "--py-spy-dir",
        type=Path,
        default=None,
        help="profile the server with py-spy (collapsed stacks per phase) into this directory",
    )
    add(
        "--tmp-root",
        type=Path,
        default=None,
        help="where the server's temporary data directory goes (system temp dir; "
        "/dev/shm takes the disk out of the measurement)",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    if args.visitors < 1:
        raise SystemExit("--visitors must be positive")
    if min(args.human_seconds, args.load_seconds, args.sweep_seconds) <= 0:
        raise SystemExit("phase lengths must be positive")
    names = args.phases if args.phases is not None else ("" if args.sweep else DEFAULT_PHASES)
    phase_settings = PhaseSettings(
        human_think_ms=args.human_think_ms,
        busy_think_ms=args.busy_think_ms,
        saturated_think_ms=args.saturated_think_ms,
        human_seconds=args.human_seconds,
        load_seconds=args.load_seconds,
    )
    phases = select_phases(names, phase_settings)
    sweep = sweep_phases(args.sweep_rates, args.visitors, args.sweep_seconds) if args.sweep else []
    if not phases and not sweep:
        raise SystemExit("nothing to run: give --phases or --sweep")
    return Settings(args.visitors, args.seed, phases, sweep, args.tmp_root, args.py_spy_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, write the JSON, print the table; exit 1 on errors, anomalies or a bad log.

    The latency targets do not affect the exit status: they are findings, not
    a check of the benchmark itself.
    """
    args = _parser().parse_args(argv)
    result = asyncio.run(run_suite(settings_from(args)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(report.markdown(result))
    print(f"\nJSON: {args.out}")
    return 1 if report.failures(result) else 0


if __name__ == "__main__":
    sys.exit(main())
