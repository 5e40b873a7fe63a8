"""Widget delivery: launcher click -> first bot message in real Chromium, and the
widget's bytes over the wire per encoding; writes ``bench/results/widget.{json,md}``.

Starts the real ``leadflow serve`` on loopback (tests.support.server) and Debian's
Chromium (headless, driven by Playwright, as the e2e tier launches it). Each run is
a new visitor (a new browser context: empty cache and storage): the demo page loads,
the launcher is clicked and the first bot message is timed; then a second page view
in the same context shows what a returning visitor downloads. ``--warmup`` runs
first, not counted. The target: click -> first bot message visible, p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from playwright.sync_api import sync_playwright

from bench.procstats import cpu_model, git_state, summarize
from bench.widget.browser import Visit, visit
from bench.widget.report import markdown
from bench.widget.wire import wire_bytes
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.server import ServerProcess

TARGET_P95_MS = 100.0
RESULTS = Path(__file__).resolve().parents[1] / "results"


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.widget", description=__doc__)
    parser.add_argument("--runs", type=int, default=40, help="visitors timed (default 40)")
    parser.add_argument("--warmup", type=int, default=3, help="visitors first, not counted")
    parser.add_argument("--timeout-ms", type=float, default=10_000, help="per browser step")
    parser.add_argument(
        "--hover-ms",
        type=float,
        default=0.0,
        help="rest the pointer on the launcher this long before the press (default 0: "
        "Playwright's click, which presses as soon as the pointer arrives)",
    )
    parser.add_argument(
        "--reduced-motion",
        action="store_true",
        help="the visitor prefers reduced motion (the widget's animations off)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="widget", help="writes <results>/<name>.{json,md}")
    return parser.parse_args(argv)


def _summary(values_ms: list[float]) -> dict[str, Any]:
    return summarize([round(v * 1e6) for v in values_ms])


def _views(visits: list[Visit], which: str) -> dict[str, Any]:
    """Launcher readiness after navigation and the widget's resources, per page view."""
    views = [getattr(v, which) for v in visits]
    per_path: dict[str, dict[str, list[float]]] = {}
    for view in views:
        for res in view["resources"]:
            name = "loader" if res["path"] == "/widget.js" else "widget"
            for key in ("transfer_bytes", "encoded_bytes", "decoded_bytes", "duration_ms"):
                per_path.setdefault(name, {}).setdefault(key, []).append(res[key])
    return {
        "launcher_ready": _summary([v["launcher_ready_ms"] for v in views]),
        "resources": {
            name: {key: round(statistics.median(vals), 2) for key, vals in fields.items()}
            for name, fields in per_path.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    load_start = os.getloadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-widget-"))
    server = ServerProcess(work / "data").start()
    try:
        wire = wire_bytes(server.http_url)
        visits: list[Visit] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for i in range(args.warmup + args.runs):
                    one = visit(
                        browser,
                        server.http_url,
                        args.timeout_ms,
                        args.hover_ms,
                        args.reduced_motion,
                    )
                    if i >= args.warmup:
                        visits.append(one)
                        took = one.intervals()["click_to_visible"]
                        print(f"  run {len(visits)}: click -> first bot message {took:.1f} ms")
                version = browser.version
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    intervals = [v.intervals() for v in visits]
    latency = {key: _summary([i[key] for i in intervals]) for key in intervals[0]}
    p95 = latency["click_to_visible"]["p95_ms"]
    report = {
        "benchmark": "widget",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": len(visits),
        "warmup_runs": args.warmup,
        "hover_ms": args.hover_ms,
        "reduced_motion": args.reduced_motion,
        "target_click_to_visible_p95_ms": TARGET_P95_MS,
        "pass": p95 <= TARGET_P95_MS,
        "latency_ms": latency,
        "opening_first_share": sum(v.opening_first for v in visits) / len(visits),
        "page_views": {"cold": _views(visits, "cold"), "warm": _views(visits, "warm")},
        "wire": wire,
        "browser": f"Chromium {version} ({CHROMIUM}, headless)",
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "load_at_start": load_start,
            "load_at_end": os.getloadavg(),
            "niceness": os.nice(0),
        },
        "seconds": round(time.monotonic() - started, 1),
        "git": git_state("gateway", "bench/widget"),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_bytes(
        orjson.dumps(report, option=orjson.OPT_INDENT_2)
    )
    text = markdown(report)
    (args.results / f"{args.name}.md").write_text(text)
    print(text)
    return 0 if report["pass"] else 1
