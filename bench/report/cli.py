"""Command line of ``python -m bench.report``: ``leadflow report funnel``'s wall
time and peak RSS on 100,000 conversations of one flow (an embedded SQLite
log), split into read + fold and charts + HTML, next to a baseline in the same
run that only reads and decodes the same events.

Each run is a fresh process (``bench.report.child``), baseline and report runs
alternate, and the median of ``--reps`` runs is reported. Exit status: 0 when
every report run saw every conversation of the log; 1 otherwise; 2 when the run
could not start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.kafka.sysstats import machine_info, versions
from bench.procstats import Json, git_state
from bench.report.log import LogSpec, ensure_log

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "report.json"
DEFAULT_CACHE = Path.home() / ".cache" / "leadflow" / "bench"
METRICS = ("total_s", "read_fold_s", "render_s", "peak_rss_mb")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--flow", default="solar-quote")
    p.add_argument("--reps", type=int, default=3, help="runs of each mode (default 3)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--chunk", type=int, default=300, help="visitors simulated at a time")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON (markdown beside it)")
    a = p.parse_args(argv)
    if a.conversations < 1 or a.reps < 1:
        p.error("--conversations and --reps must be positive")
    return a


def child(mode: str, flow: str, data_dir: Path, out: Path) -> Json:
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.report.child", mode, flow, str(data_dir), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    result: Json = orjson.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - began  # interpreter start and imports too
    return result


def summary(runs: list[Json]) -> Json:
    out: Json = {"runs": len(runs)}
    for metric in (*METRICS, "process_s"):
        values = [run[metric] for run in runs]
        out[metric] = {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }
    return out


def measure(a: argparse.Namespace, data_dir: Path) -> dict[str, list[Json]]:
    runs: dict[str, list[Json]] = {"read": [], "report": []}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        for rep in range(a.reps):
            for mode in runs:
                result = child(mode, a.flow, data_dir, Path(tmp) / "funnel.html")
                runs[mode].append(result)
                print(f"  {mode} {rep + 1}/{a.reps}: {result['total_s']:.2f} s, "
                      f"{result['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    return runs


def markdown(results: Json) -> str:
    read, report = results["read"], results["report"]
    log = results["log"]
    rows = [
        ("read + decode only (baseline)", read),
        ("leadflow report funnel", report),
    ]
    lines = [
        f"# `python -m bench.report` ({results['timestamp']})",
        "",
        f"{log['conversations']:,} {results['config']['flow']} conversations, "
        f"{log['events']:,} events, embedded SQLite log; median of {report['runs']} runs each "
        "(fresh process per run, modes alternating).",
        "",
        "| run | total s | read + fold s | charts + HTML s | imports + flow files s "
        "| peak RSS MB | process s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in rows:
        total, read_fold, render = (s[m]["median"] for m in ("total_s", "read_fold_s", "render_s"))
        lines.append(
            f"| {name} | {total:.2f} | {read_fold:.2f} | {render:.2f} | "
            f"{total - read_fold - render:.2f} | {s['peak_rss_mb']['median']:.0f} | "
            f"{s['process_s']['median']:.2f} |"
        )
    fold = report["read_fold_s"]["median"] - read["read_fold_s"]["median"]
    lines += [
        "",
        f"* the fold's own cost (report read + fold minus the baseline): {fold:.2f} s",
        f"* report: {results['report_counts']['conversations']:,} conversations, "
        f"{results['report_counts']['leads']:,} leads, "
        f"{results['report_counts']['bytes']:,}-byte HTML file",
        "* `total s`: inside the process, from before the imports of the measured code "
        "(matplotlib, scipy) to the file written; `process s`: the whole process, "
        "interpreter start included",
        f"* machine: {results['machine'].get('nproc', '?')} cores, "
        f"load average at start {results['load_average']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    began = time.perf_counter()
    try:
        info = ensure_log(LogSpec(a.flow, a.conversations, a.seed, a.chunk), a.cache_dir)
    except (OSError, ValueError) as exc:
        print(f"bench.report: cannot build the log: {exc}", file=sys.stderr)
        return 2
    results: Json = {
        "benchmark": "report",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "git": git_state("projector/report", "projector/export", "app/cli_report.py"),
        "load_average": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "config": {"flow": a.flow, "reps": a.reps, "seed": a.seed, "chunk": a.chunk},
        "log": {
            "data_dir": str(info.data_dir),
            "events": info.events,
            "conversations": info.conversations,
            "cached": info.cached,
            "generation_s": round(info.generation_s, 1),
        },
    }
    runs = measure(a, info.data_dir)
    results["read"], results["report"] = summary(runs["read"]), summary(runs["report"])
    last = runs["report"][-1]
    results["report_counts"] = {k: last[k] for k in ("conversations", "leads", "events", "bytes")}
    results["runs"] = runs
    results["duration_s"] = round(time.perf_counter() - began, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    table = markdown(results)
    a.out.with_suffix(".md").write_text(table)
    print()
    print(table)
    print(f"wrote {a.out} and {a.out.with_suffix('.md')}")
    complete = all(run["conversations"] == info.conversations for run in runs["report"])
    return 0 if complete else 1
