"""``python -m bench.scale``: see bench/README.md ("bench.scale") and the package doc."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.procstats import cpu_model, git_state
from bench.scale.fleet import LoadGens
from bench.scale.measure import loadavg
from bench.scale.plan import PlanError, default_gateways, default_loadgens, plan
from bench.scale.report import markdown
from bench.scale.run import drive
from bench.scale.stack import Stack
from bench.scale.summary import summarize

Json = dict[str, Any]
RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--sockets", type=int, default=100_000, help="visitor sockets held")
    p.add_argument("--active", type=int, default=1000, help="of them, visitors playing flows")
    p.add_argument("--gateways", type=int, default=0, help="0: the fewest that fit (>= 3)")
    p.add_argument("--loadgens", type=int, default=0, help="0: one per --per-loadgen sockets")
    p.add_argument("--per-loadgen", type=int, default=17_000)
    p.add_argument("--processors", type=int, default=2)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument(
        "--victim-share", type=float, default=0.2, help="of the sockets, on the killed gateway"
    )
    p.add_argument(
        "--ramp-concurrency", type=int, default=96, help="sockets opening at once, in all"
    )
    p.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("LO", "HI"))
    p.add_argument(
        "--idle-seconds", type=float, default=25.0, help="idle CPU window (> the 20 s heartbeat)"
    )
    p.add_argument("--active-seconds", type=float, default=60.0)
    p.add_argument(
        "--probe-interval",
        type=float,
        default=2.0,
        help="seconds between probes, per load generator",
    )
    p.add_argument("--failover-timeout", type=float, default=300.0)
    p.add_argument("--after-seconds", type=float, default=15.0, help="playing on after all resumed")
    p.add_argument("--ramp-timeout", type=float, default=0.0, help="0: 300 s + 20 ms per socket")
    p.add_argument("--transcript-sample", type=int, default=40, help="per load generator")
    p.add_argument("--no-kill", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    p.add_argument("--md", type=Path, default=RESULTS / "scale.md")
    p.add_argument("--tmp-root", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the services' logs")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    return p.parse_args(argv)


def budget() -> int:
    """Sockets one process may hold: the hard open-files limit less 1,000 (Kafka,
    Redis, listeners, files)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return (1 << 20 if hard == resource.RLIM_INFINITY else hard) - 1000


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cap = budget()
    try:
        gateways = args.gateways or default_gateways(args.sockets, cap, args.victim_share)
        loadgens = args.loadgens or default_loadgens(args.sockets, args.per_loadgen)
        layout = plan(args.sockets, gateways, loadgens, cap, args.victim_share)
    except PlanError as exc:
        print(f"cannot plan the run: {exc}", file=sys.stderr)
        return 2
    sizes = [sum(r) for r in layout.loadgens]
    print(f"plan: gateways {layout.gateways} (victim {layout.victim}), "
          f"load generators {sizes}, budget {cap}", flush=True)  # fmt: skip

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.tmp_root))
    extra = dict(kv.split("=", 1) for kv in args.env)
    stack = Stack(workdir, gateways, args.processors, args.partitions,
                  max_connections=cap, log_level=args.log_level, extra_env=extra)  # fmt: skip
    gens = LoadGens()
    started_at, wall = datetime.now(UTC), time.monotonic()
    load_at_start = loadavg()
    status = 0
    try:
        stack.start()
        raw = asyncio.run(drive(args, stack, layout, gens, workdir))
        try:
            summary = summarize(args, layout, raw, stack)
        except Exception:  # keep what was measured
            dump = args.out.with_suffix(".raw.json")
            dump.write_bytes(orjson.dumps(raw, default=str))
            print(f"could not summarize; the raw answers are in {dump}", file=sys.stderr)
            raise
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 2
        summary = {}
        raw = {}
    finally:
        # a second Ctrl-C or SIGTERM must not cut the teardown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gens.kill()
        exit_codes = stack.exit_codes()
        problems = stack.problems()
        stack.stop()
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if status:
        print(f"service exit codes {exit_codes}; problems {problems}", file=sys.stderr)
        return status
    doc: Json = {
        "benchmark": "bench.scale",
        "timestamp": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - wall, 1),
        "machine": {
            "nproc": _nproc(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": load_at_start,
            "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        },
        "git": git_state("bench/scale", "gateway", "services", "app"),
        "config": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
        "plan": {
            "gateways": layout.gateways,
            "victim": layout.victim,
            "loadgens": [sum(r) for r in layout.loadgens],
            "budget_per_process": cap,
        },
        "services": {"exit_codes": exit_codes, "log_problems": problems},
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    table = markdown(doc)
    args.md.write_text(table)
    print(table)
    print(f"wrote {args.out} and {args.md}")
    ok = summary["targets"]["errors_zero"] and summary["targets"]["all_held"]
    return 0 if ok else 1


def _nproc() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
