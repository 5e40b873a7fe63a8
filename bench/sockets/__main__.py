"""``python -m bench.sockets``: see the package's doc."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.embedded.profiling import start_py_spy
from bench.embedded.servers import EchoServer, LeadflowServer
from bench.procstats import CLK_TCK, cpu_model, process_cpu_seconds, summarize
from bench.sockets import visitors
from bench.sockets.report import table
from services.limits import raise_open_files

RESULTS = Path(__file__).resolve().parents[1] / "results"
Json = dict[str, Any]
SETTLE_S = 0.5  # after the last visitor: the server's side of the closes


def cpu_of(pid: int) -> Callable[[], float]:
    def measure() -> float:
        value = process_cpu_seconds(pid)
        if value is None:
            raise RuntimeError(f"process {pid} is gone")
        return value

    return measure


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of the process's main thread (its event loop) alone; the rest of the
    process is its other threads (SQLite writers and readers, the delivery's)."""
    stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss(pid: int) -> int:
    """Resident memory of the process, bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def phase(pid: int, url: str, args: argparse.Namespace, visit: visitors.Visit) -> Json:
    """Run visitors and take the server's CPU around them (closes included)."""
    measure = cpu_of(pid)
    before, main_before, began = measure(), main_thread_cpu(pid), time.monotonic()
    out = await visitors.visitors(url, args.visitors, args.concurrency, visit)
    await asyncio.sleep(SETTLE_S)
    cpu, wall = measure() - before, time.monotonic() - began - SETTLE_S
    main = main_thread_cpu(pid) - main_before
    done = len(out.latencies_ns)
    return {
        "visitors": done,
        "errors": dict(out.errors),
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_visitor": round(cpu * 1000 / max(done, 1), 4),
        "main_thread_ms_per_visitor": round(main * 1000 / max(done, 1), 4),
        "other_threads_ms_per_visitor": round((cpu - main) * 1000 / max(done, 1), 4),
        "wall_seconds": round(wall, 2),
        "per_second": round(done / wall, 1) if wall > 0 else None,
        "latency": summarize(out.latencies_ns),
        "sessions": out.sessions,
    }


async def measure_opens(
    args: argparse.Namespace, leadflow: LeadflowServer, echo: EchoServer
) -> Json:
    runs: dict[str, list[Json]] = {"echo": [], "start": [], "resume": []}
    for repeat in range(args.repeats):
        echo_run = await phase(echo.pid, echo.ws_url, args, visitors.echo)
        start_run = await phase(leadflow.pid, leadflow.ws_url, args, visitors.start)
        resume = visitors.resume(start_run["sessions"])
        resume_run = await phase(leadflow.pid, leadflow.ws_url, args, resume)
        for name, run in (("echo", echo_run), ("start", start_run), ("resume", resume_run)):
            run.pop("sessions")
            runs[name].append(run)
            print(f"repeat {repeat + 1}: {name} {run['cpu_ms_per_visitor']:.3f} ms CPU/visitor "
                  f"(main thread {run['main_thread_ms_per_visitor']:.3f}), "
                  f"{run['per_second']}/s, errors {run['errors']}", flush=True)  # fmt: skip
    return {
        name: {
            "cpu_ms_per_visitor": statistics.median(r["cpu_ms_per_visitor"] for r in rs),
            "main_thread_ms_per_visitor": statistics.median(
                r["main_thread_ms_per_visitor"] for r in rs
            ),
            "runs": rs,
        }
        for name, rs in runs.items()
    }


async def measure_idle(
    args: argparse.Namespace, leadflow: LeadflowServer, echo: EchoServer
) -> Json:
    """Each server's CPU with no socket over the window, then with ``--idle`` sockets:
    what the sockets add is the difference (Leadflow has timers of its own: the policy's
    schedule, the log followers)."""
    out: Json = {}
    for name, server in (("echo", echo), ("leadflow", leadflow)):
        measure = cpu_of(server.pid)
        before, at = measure(), time.monotonic()
        await asyncio.sleep(args.idle_seconds)
        alone = (measure() - before) / (time.monotonic() - at)
        row = await visitors.hold(
            server.ws_url,
            args.idle,
            args.idle_seconds,
            measure,
            functools.partial(rss, server.pid),
            app_pings=args.app_pings and name == "leadflow",
        )
        row["cpu_ms_per_second_without_sockets"] = round(alone * 1000, 2)
        held = row["cpu_seconds"] / row["window_seconds"]
        row["added_cpu_ms_per_second_per_10k"] = round(
            (held - alone) * 1000 * 10_000 / args.idle, 2
        )
        out[name] = row
        print(f"idle {name}: {row}", flush=True)
        await asyncio.sleep(2.0)
    return out


async def run(args: argparse.Namespace, workdir: Path) -> Json:
    env = {"LEADFLOW_LOG_LEVEL": "warning", "LEADFLOW_STARTS_PER_MINUTE": "1000",
           "LEADFLOW_POLICY": args.policy}  # fmt: skip
    env.update(item.split("=", 1) for item in args.env)
    leadflow = LeadflowServer(workdir / "data", env)
    echo = EchoServer(workdir / "echo.log")
    leadflow.start()
    echo.start()
    stop_spy = None
    try:
        await visitors.visitors(leadflow.ws_url, 200, args.concurrency, visitors.start)  # warm
        await visitors.visitors(echo.ws_url, 200, args.concurrency, visitors.echo)
        if args.py_spy_dir is not None:
            stop_spy = start_py_spy(leadflow.pid, args.py_spy_dir, "sockets")
        opens = await measure_opens(args, leadflow, echo)
        if stop_spy is not None:
            stop_spy()
            stop_spy = None
        idle = await measure_idle(args, leadflow, echo) if args.idle else None
    finally:
        if stop_spy is not None:
            stop_spy()
        stopped = {"leadflow": leadflow.stop(), "echo": echo.stop()}
    return {
        "opens": opens,
        "idle": idle,
        "stopped": {k: v["exit_code"] for k, v in stopped.items()},
    }


def unit_costs(results: Json) -> Json:
    """What the capacity model (bench.capacity) reads: server CPU per start (ms), RSS per
    idle socket (KiB) and the cores 10k idle sockets add, of Leadflow's server."""
    costs: Json = {
        "start_cpu_ms": results["opens"]["start"]["cpu_ms_per_visitor"],
        # one process does it all here: a distributed gateway's share is less (no SQLite,
        # no conversation service, no delivery or policy followers; Kafka instead)
        "measured_on": "leadflow serve: gateway, conversation service, SQLite, delivery, policy",
    }
    idle = (results.get("idle") or {}).get("leadflow")
    if idle:
        costs["socket_kib"] = idle["rss_kib_per_socket"]
        costs["idle_cores_per_10k"] = round(
            max(0.0, idle["added_cpu_ms_per_second_per_10k"]) / 1000, 4
        )
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Server CPU per start, resume and idle socket")
    parser.add_argument("--visitors", type=int, default=2000, help="per phase and repeat")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10_000, help="idle sockets (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=45.0)
    parser.add_argument(
        "--app-pings", action="store_true",
        help="idle Leadflow sockets send the widget's ping frame every 25 s, as widgets do",
    )  # fmt: skip
    parser.add_argument("--policy", default="thompson", help="LEADFLOW_POLICY of the server")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="a variable of the server's (e.g. LEADFLOW_DELIVERY=off); repeatable",
    )  # fmt: skip
    parser.add_argument("--py-spy-dir", type=Path, default=None)
    parser.add_argument("--label", default="", help="what this run measures (in the table)")
    parser.add_argument("--out", type=Path, default=RESULTS / "sockets.json")
    args = parser.parse_args(argv)
    raise_open_files("bench.sockets")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-sockets-") as tmp:
        measured = asyncio.run(run(args, Path(tmp)))
    results: Json = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "command": "python -m bench.sockets",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **measured,
    }
    results["unit_costs"] = unit_costs(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    markdown = table(results)
    args.out.with_suffix(".md").write_text(markdown, "utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
