"""The edge benchmark: click -> first question visible for a visitor far from the
region and near it, with and without the instant opening (issue 20).

One ``leadflow serve`` (the region) behind two Toxiproxy proxies (bench.edge.toxiproxy):
*far*, 150 ms one way (a visitor on another continent), and *near*, 5 ms one way.
Each run is a new visitor (a new browser context: empty cache and storage) on a host
page of its own origin that embeds the widget; the launcher is clicked as soon as the
widget is mounted (Playwright's click: the pointer arrives and presses at once, so
the socket and the opening get no head start from the hover). Scenarios, interleaved
run by run so that the machine's noise falls on all alike:

* ``a_far_today``: widget, opening and socket all far; ``data-instant="false"``: the
  first question needs the socket's handshake and the start's round trip.
* ``b_far_instant``: the widget and the opening come from near (what a CDN in front of
  the region serves from its cache, beside the visitor: modelled by the near proxy),
  the socket goes far (the page's WebSocket is pointed at the far proxy).
* ``c_near``: the region is near; the default widget (instant opening on).
* ``d_near_today``: near, ``data-instant="false"`` (for reference).

The widget fetches the opening once the page is idle after it mounted (and on
intent); the click comes as soon as the launcher is there (after Playwright's round
trips to the page: a little over 100 ms), so a slow fetch is still in flight at the
click and counts. Pacing is off (``prefers-reduced-motion``), so the time measured is
the network's and the widget's, not the typing indicator's. The target: (b) and (c) p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from bench.edge.browser import Scenario, page, visit
from bench.edge.toxiproxy import VERSION, Toxiproxy, ensure_installed
from bench.procstats import cpu_model, git_state, summarize
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support import opening
from tests.support.host_pages import HostPages
from tests.support.server import ServerProcess, free_port

FAR_MS, NEAR_MS = 150, 5
TARGET_P95_MS = 100.0
TARGETED = ("b_far_instant", "c_near")
RESULTS = Path(__file__).resolve().parents[1] / "results"


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__)
    parser.add_argument("--runs", type=int, default=25, help="visitors per scenario (25)")
    parser.add_argument("--warmup", type=int, default=2, help="per scenario, not counted")
    parser.add_argument("--timeout-ms", type=float, default=15_000, help="per browser step")
    parser.add_argument("--out", type=Path, default=RESULTS / "edge.json")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (a_far_today, ...)")
    return parser.parse_args(argv)


def _scenarios(pages: HostPages, far: str, near: str) -> list[Scenario]:
    flow = opening.FLOW
    off = 'data-instant="false"'
    far_ws, near_ws = far.replace("http://", "ws://"), near.replace("http://", "ws://")
    return [
        Scenario("a_far_today", "(a) far region, today's path", page(pages, "a", far, flow, off)),
        Scenario(
            "b_far_instant",
            "(b) far region, instant opening served near",
            page(pages, "b", near, flow),
            socket_from=f"{near_ws}/",
            socket_to=f"{far_ws}/",
        ),
        Scenario("c_near", "(c) near region", page(pages, "c", near, flow)),
        Scenario(
            "d_near_today", "(d) near region, today's path", page(pages, "d", near, flow, off)
        ),
    ]


def _table(report: dict[str, Any]) -> str:
    rows = [
        "| scenario | p50 ms | p95 ms | max ms | question before the socket opened |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in report["scenarios"].values():
        shown = result["click_to_question_visible_ms"]
        rows.append(
            f"| {result['label']} | {shown['p50_ms']:.0f} | {shown['p95_ms']:.0f} | "
            f"{shown['max_ms']:.0f} | {result['before_socket_share']:.0%} |"
        )
    load = report["machine"]
    rows.append(
        f"\n{report['runs']} visitors per scenario; load average {load['load_at_start'][0]:.2f} "
        f"at the start, {load['load_at_end'][0]:.2f} at the end ({load['cores']} cores)."
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    binary = ensure_installed()
    load_start = os.getloadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    env = {**opening.environment(work), "LEADFLOW_DELIVERY": "off"}
    server = ServerProcess(work / "data", env=env).start()
    proxy = Toxiproxy(binary, free_port(), work / "toxiproxy.log")
    pages = HostPages()
    samples: dict[str, list[dict[str, float]]] = {}
    retried: list[str] = []
    try:
        proxy.start()
        far_port, near_port = free_port(), free_port()
        proxy.region("far", far_port, server.port, FAR_MS)
        proxy.region("near", near_port, server.port, NEAR_MS)
        far, near = f"http://127.0.0.1:{far_port}", f"http://127.0.0.1:{near_port}"
        scenarios = [s for s in _scenarios(pages, far, near) if s.name in (args.only or [s.name])]
        probes = {
            name: f"{base}/widget.js"
            for name, base in (("server", server.http_url), ("far", far), ("near", near))
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for i in range(args.warmup + args.runs):
                    for scenario in scenarios:
                        one = _visit(browser, scenario, args.timeout_ms, retried, proxy, probes)
                        if i >= args.warmup:
                            samples.setdefault(scenario.name, []).append(one)
                    if i >= args.warmup:
                        line = ", ".join(
                            f"{name} {runs[-1]['click_to_visible']:.0f}"
                            for name, runs in samples.items()
                        )
                        print(f"  run {i - args.warmup + 1}: {line} ms", flush=True)
                version = browser.version
            finally:
                browser.close()
    finally:
        pages.close()
        proxy.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    results: dict[str, Any] = {}
    for scenario in scenarios:
        runs = samples[scenario.name]
        results[scenario.name] = {
            "label": scenario.label,
            "click_to_question_visible_ms": _summary([r["click_to_visible"] for r in runs]),
            "click_to_question_in_dom_ms": _summary([r["click_to_in_dom"] for r in runs]),
            "click_to_socket_open_ms": _summary([r["click_to_socket_open"] for r in runs]),
            # the opening's two requests (the pointer and the document) done; (a), (d): none
            "click_to_opening_fetched_ms": _summary([r["click_to_opening_fetched"] for r in runs]),
            "before_socket_share": sum(r["before_socket"] for r in runs) / len(runs),
        }
    passed = all(
        results[name]["click_to_question_visible_ms"]["p95_ms"] <= TARGET_P95_MS
        for name in TARGETED
        if name in results
    )
    report = {
        "benchmark": "edge",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "warmup_runs": args.warmup,
        "one_way_latency_ms": {"far": FAR_MS, "near": NEAR_MS},
        "toxiproxy": {"version": VERSION, "server_says": proxy.version},
        "target_p95_ms": TARGET_P95_MS,
        "targeted": list(TARGETED),
        "pass": passed,
        "scenarios": results,
        "visits_timed_out_and_run_again": retried,
        "browser": f"Chromium {version} ({CHROMIUM}, headless)",
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "load_at_start": load_start,
            "load_at_end": os.getloadavg(),
        },
        "seconds": round(time.monotonic() - started, 1),
        "git": git_state("gateway", "services/opening.py", "bench/edge"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(_table(report))
    return 0 if passed else 1


def _visit(
    browser: Browser,
    scenario: Scenario,
    timeout_ms: float,
    retried: list[str],
    proxy: Toxiproxy,
    probes: dict[str, str],
) -> Any:
    """One visit. A visit that timed out is run again (at most twice, counted in the
    report) after a probe of each URL in ``probes`` (is the server or a proxy stuck?)
    and with the proxies made anew: after some hundreds of connections a Toxiproxy
    proxy was seen to stop forwarding (a page's request through it pending for good,
    while the server answered directly)."""
    for attempt in range(3):
        try:
            return visit(browser, scenario, timeout_ms)
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
            retried.append(scenario.name)
            print(f"  {scenario.name}: timed out; {_probe(probes)}; proxies made anew", flush=True)
            proxy.recreate()
    raise AssertionError("unreachable")


def _probe(probes: dict[str, str]) -> str:
    answers = []
    for name, url in probes.items():
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                answers.append(f"{name} {response.status}")
        except (OSError, urllib.error.URLError) as exc:
            answers.append(f"{name} {type(exc).__name__}")
    return ", ".join(answers)


def _summary(values_ms: list[float]) -> dict[str, Any]:
    return summarize([round(v * 1e6) for v in values_ms])
