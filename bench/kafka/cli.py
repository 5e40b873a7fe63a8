"""Command line of ``python -m bench.kafka``: start everything, measure, report, stop.

Exit status: 0 when every command got its reply without error; 1 when any client saw
an error, a timeout or a missing reply, or a service died; 2 when the run could not
start or was interrupted. The latency and throughput targets do not affect it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import orjson

from bench.kafka import profiling, report, verdicts
from bench.kafka.config import DEFAULT_OUT, Config
from bench.kafka.stack import Stack
from bench.kafka.suite import Suite, empty_results
from bench.kafka.sysstats import Json, machine_info, versions
from services.limits import raise_open_files


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.kafka", description=__doc__)
    d = Config()
    p.add_argument(
        "--visitors",
        type=_ints,
        default=d.visitors,
        help="concurrent WebSocket visitors per step (default 50,200,500,2000)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        help="offered presses/s of the paced runs (default 500)",
    )
    p.add_argument("--modes", default=",".join(d.modes), help="paced,saturated (default both)")
    p.add_argument("--paced-seconds", type=float, default=d.paced_seconds)
    p.add_argument("--saturated-seconds", type=float, default=d.saturated_seconds)
    p.add_argument(
        "--raw-seconds",
        type=float,
        default=d.raw_seconds,
        help="length of each raw and relay floor run",
    )
    p.add_argument("--warmup-seconds", type=float, default=d.warmup_seconds)
    p.add_argument("--gateways", type=int, choices=(1, 2), default=d.gateways)
    p.add_argument(
        "--partitions",
        type=int,
        default=d.partitions,
        help="partitions of commands/events (default 4)",
    )
    p.add_argument(
        "--burst", type=int, default=d.burst, help="commands per processor-alone burst (0: skip)"
    )
    p.add_argument("--no-raw", action="store_true", help="skip the one-hop raw floor")
    p.add_argument("--no-relay", action="store_true", help="skip the two-hop relay floor")
    p.add_argument("--linger-ms", type=int, default=d.linger_ms)
    p.add_argument("--fetch-max-wait-ms", type=int, default=d.fetch_max_wait_ms)
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    p.add_argument("--profile-seconds", type=float, default=d.profile_seconds)
    p.add_argument("--profile-visitors", type=int, default=d.profile_visitors)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--tmp-root",
        type=Path,
        default=None,
        help="where the broker, Redis and services keep their data",
    )
    p.add_argument("--log-level", default=d.log_level, help="of the services (default info)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the processor and gateways (repeatable)",
    )
    p.add_argument("--keep", action="store_true", help="keep the logs and data directories")
    a = p.parse_args(argv)
    modes = tuple(m for m in a.modes.split(",") if m)
    if not set(modes) <= {"paced", "saturated"} or not a.visitors:
        p.error("--modes takes paced and/or saturated; --visitors at least one count")
    extra = dict(item.split("=", 1) for item in a.env)
    return Config(
        visitors=a.visitors,
        rate=a.rate,
        modes=modes,
        paced_seconds=a.paced_seconds,
        saturated_seconds=a.saturated_seconds,
        raw_seconds=a.raw_seconds,
        warmup_seconds=a.warmup_seconds,
        gateways=a.gateways,
        partitions=a.partitions,
        burst=a.burst,
        raw=not a.no_raw,
        relay=not a.no_relay,
        linger_ms=a.linger_ms,
        fetch_max_wait_ms=a.fetch_max_wait_ms,
        profile=not a.no_profile and profiling.available(),
        profile_seconds=a.profile_seconds,
        profile_visitors=a.profile_visitors,
        seed=a.seed,
        out=a.out,
        tmp_root=a.tmp_root,
        log_level=a.log_level,
        extra_env=extra,
    )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _failed(results: Json) -> bool:
    runs = [results.get("warmup") or {}, results["leadflow_single"] or {}, *results["leadflow"]]
    for name in ("raw", "relay"):
        runs += [r for r in [results[name]["single"], *results[name]["runs"]] if r]
    if any(run.get("errors") for run in runs):
        return True
    if any(c["errors"] for c in results["connects"]):
        return True
    bursts = [b for b in results["processor_alone"].values() if isinstance(b, dict)]
    if any(b.get("missing_replies") or b.get("error_replies") for b in bursts):
        return True
    return any(v is not None for v in results.get("health", {}).get("exit_codes", {}).values())


def main(argv: list[str] | None = None) -> int:
    keep = "--keep" in (sys.argv[1:] if argv is None else argv)
    cfg = parse([a for a in (sys.argv[1:] if argv is None else argv) if a != "--keep"])
    # the clients' own warnings (e.g. aiokafka retrying a fresh topic), attributed
    logging.basicConfig(level=logging.WARNING, format="  [%(name)s] %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    raise_open_files("bench.kafka")  # thousands of sockets, as the services do
    started = time.time()
    results: Json = {
        "benchmark": "kafka",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine_info(),
        "versions": versions(),
        "config": cfg.to_json(),
        **empty_results(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-kafka-", dir=cfg.tmp_root))
    stack = Stack(cfg, workdir)
    status = 0
    try:
        stack.start()
        results["stack"] = {
            "bootstrap": stack.bootstrap,
            "prefix": stack.prefix,
            "notes": stack.notes,
            "pids": stack.pids(),
        }
        asyncio.run(Suite(cfg, stack, results, workdir).run())
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr, flush=True)
        results["interrupted"] = True
        status = 2
    except Exception as exc:
        print(f"bench.kafka failed: {exc!r}", file=sys.stderr, flush=True)
        results["failure"] = repr(exc)[:2000]
        status = 2
    finally:
        results["health"] = {
            "exit_codes": stack.services_alive(),
            "log_problems": stack.log_problems(),
            "log_tails": stack.log_tails(),
        }
        stack.stop()
        if keep:
            print(f"kept the services' data and logs in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for run in [results.get("warmup") or {}, results["leadflow_single"] or {}]:
        run.pop("_traces", None)
    for run in results["leadflow"]:
        run.pop("_traces", None)  # an interrupted run did not get to the breakdown
    results["duration_s"] = round(time.time() - started, 1)
    results["targets"] = verdicts.judge(results)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print()
    print(report.markdown(results))
    print(verdicts.errors_section(results))
    print(f"\n{results['duration_s']} s; JSON in {cfg.out}", flush=True)
    if status == 0 and _failed(results):
        status = 1
    return status
