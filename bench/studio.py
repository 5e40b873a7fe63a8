"""Studio page load to interactive with a 500-node flow, in Chromium (issue 18's target:
<= 1.5 s on this box).

``python -m bench.studio`` generates a valid flow of ``--nodes`` nodes (``--shape``:
``stages``, a wide quiz about 30 questions deep, or ``chain``, one question per rank with
edges over 2 and 3 ranks, the worst case for the layout; every question has a decision
point; then a lead form and an end),
publishes it through the admin API of a fresh ``leadflow serve``, and opens
``/studio/#flow=<it>`` in Debian's headless Chromium with the key already in the tab's
sessionStorage (as after the key form). Each run is a new browser context (a cold
cache). Measured inside the page on one clock (``performance.now()``, from the
navigation's start): when the studio's graph of all nodes is drawn (its
``studio:graph-drawn`` event: the flow's versions and document fetched, the editor
filled, the YAML parsed, dagre's layout and the SVG done), the layout-and-draw part
alone, and when the editor is filled and marked valid (a published version as loaded
is not sent to be validated again; the studio starts the editor once the first graph is
drawn, so the two are sequential: "both ready" is the page fully usable). Prints JSON and a table;
``--out`` writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from services.http_auth import hash_api_key, new_api_key
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.server import ServerProcess

TARGET_MS = 1500.0
FLOW_ID = "bench-studio"

MARKS = """
(() => {
  window.__studioBench = {};
  document.addEventListener('studio:graph-drawn', () => {
    if (window.__studioBench.drawn === undefined) window.__studioBench.drawn = performance.now();
  });
  new MutationObserver(() => {
    const v = document.getElementById('validity');
    if (v && window.__studioBench.valid === undefined && /^(Valid|\\d+ error)/.test(v.textContent))
      window.__studioBench.valid = performance.now();
  }).observe(document, { subtree: true, childList: true, characterData: true });
})();
"""


WIDTH = 20  # the stages shape's questions per stage


def _lead_and_end(items: list[dict[str, Any]]) -> None:
    items.append(
        {
            "id": "contact",
            "kind": "lead_form",
            "text": "Where should we send your results?",
            "fields": [
                {"name": "email", "type": "email", "label": "Email", "required": True},
                {"name": "consent", "type": "consent", "label": "I agree", "required": True},
            ],
            "next": "done",
        }
    )
    items.append({"id": "done", "kind": "end", "text": "Thanks!"})


def _question(node_id: str, i: int, buttons: list[tuple[str, list[str]]]) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": "question",
        "text": f"Question {i}: how is it?",
        "buttons": [
            {"id": b, "label": f"{b} from {i}", "next": t[0] if len(t) == 1 else t}
            for b, t in buttons
        ],
    }


def _chain(questions: int) -> list[dict[str, Any]]:
    """Question i: ``next`` to i+1, a decision point ``jump`` between i+2 and i+3: as deep
    as a flow gets (one rank per question), with edges over 2 and 3 ranks."""

    def target(i: int) -> str:
        return f"q{i}" if i < questions else "contact"

    return [
        _question(
            f"q{i}",
            i,
            [
                ("next", [target(i + 1)]),
                ("jump", list(dict.fromkeys([target(i + 2), target(i + 3)]))),
            ],
        )
        for i in range(questions)
    ]


def _stages(questions: int) -> list[dict[str, Any]]:
    """Stages of 1, 2, 4, 8, 16, then 20 questions: each question's buttons ``a`` and ``b``
    lead to two of the next stage (every question is reached) and ``c`` is a decision
    point between two others of it; the last stage leads to the lead form. A large quiz:
    about 30 questions deep, each edge between adjacent stages."""
    widths: list[int] = []
    left = questions
    while left:
        width = min(WIDTH, 2 ** len(widths), left)
        widths.append(width)
        left -= width
    names = [[f"s{s}q{c}" for c in range(w)] for s, w in enumerate(widths)]
    items = []
    n = 0
    for s, stage in enumerate(names):
        following = names[s + 1] if s + 1 < len(names) else None
        for c, node_id in enumerate(stage):
            if following is None:
                buttons = [("a", ["contact"])]
            else:
                w = len(following)
                pick = [following[(2 * c) % w], following[(2 * c + 1) % w]]
                pair = list(dict.fromkeys([following[(c + 3) % w], following[(c + 11) % w]]))
                buttons = [("a", [pick[0]]), ("b", [pick[1]]), ("c", pair)]
            items.append(_question(node_id, n, buttons))
            n += 1
    return items


SHAPES = {"stages": _stages, "chain": _chain}


def make_flow(nodes: int, shape: str = "stages") -> dict[str, Any]:
    """A valid flow of exactly ``nodes`` nodes: ``nodes - 2`` questions in the given
    shape, a lead form and an end."""
    if nodes < 4:
        raise ValueError("at least 4 nodes")
    items = SHAPES[shape](nodes - 2)
    _lead_and_end(items)
    start = str(items[0]["id"])
    return {
        "id": FLOW_ID,
        "version": 1,
        "title": "Studio benchmark",
        "start": start,
        "nodes": items,
    }


def _publish(base: str, key: str, flow: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{base}/api/v1/flows",
        data=json.dumps(flow).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        version: int = json.loads(resp.read())["version"]
        return version


def _one(browser: Any, base: str, key: str, nodes: int, timeout_s: float) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        context.add_init_script(f"sessionStorage.setItem('leadflow.studio.key', {key!r});")
        context.add_init_script(MARKS)
        page = context.new_page()
        page.goto(f"{base}/studio/#flow={FLOW_ID}")
        deadline = time.monotonic() + timeout_s
        marks: dict[str, Any] = {}
        while time.monotonic() < deadline:
            marks = page.evaluate("() => window.__studioBench")
            if "drawn" in marks and "valid" in marks:
                break
            time.sleep(0.02)
        else:
            raise TimeoutError(f"the graph was not drawn in {timeout_s} s: {marks}")
        graph = page.evaluate(
            "() => ({ nodes: Number(document.getElementById('graph').dataset.nodes),"
            " layout: Number(document.getElementById('graph').dataset.layoutMs),"
            " compute: Number(document.getElementById('graph').dataset.computeMs),"
            " drawn: Number(document.getElementById('graph').dataset.drawnMs) })"
        )
        if graph["nodes"] != nodes:
            raise RuntimeError(f"drew {graph['nodes']} nodes, not {nodes}")
        steps = page.evaluate(
            "() => Object.fromEntries(performance.getEntriesByType('mark')"
            ".filter((m) => m.name.startsWith('studio:'))"
            ".map((m) => [m.name.slice(7), Math.round(m.startTime)]))"
        )
        return {
            **{f"at_{name.replace('-', '_')}_ms": float(at) for name, at in steps.items()},
            "graph_drawn_ms": round(marks["drawn"], 1),
            "layout_ms": graph["layout"],
            "dagre_ms": graph["compute"],
            "svg_ms": graph["drawn"],
            "editor_ready_ms": round(marks["valid"], 1),
            "all_ready_ms": round(max(marks["drawn"], marks["valid"]), 1),
        }
    finally:
        context.close()


def run(nodes: int, runs: int, timeout_s: float, shape: str = "stages") -> dict[str, Any]:
    key = new_api_key()
    flow = make_flow(nodes, shape)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(key), "LEADFLOW_DELIVERY": "off"}
        server = ServerProcess(Path(tmp) / "data", env=env).start()
        try:
            version = _publish(server.http_url, key, flow)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    _one(browser, server.http_url, key, nodes, timeout_s)  # warm-up
                    samples = [
                        _one(browser, server.http_url, key, nodes, timeout_s) for _ in range(runs)
                    ]
                finally:
                    browser.close()
        finally:
            server.stop()
    drawn = [s["graph_drawn_ms"] for s in samples]
    return {
        "benchmark": "studio_load",
        "nodes": nodes,
        "shape": shape,
        "buttons": sum(len(n.get("buttons", [])) for n in flow["nodes"]),
        "document_bytes": len(json.dumps(flow)),
        "flow_version": version,
        "runs": runs,
        "samples": samples,
        "graph_drawn_ms_p50": round(statistics.median(drawn), 1),
        "graph_drawn_ms_max": max(drawn),
        "layout_ms_p50": round(statistics.median(s["layout_ms"] for s in samples), 1),
        "svg_ms_p50": round(statistics.median(s["svg_ms"] for s in samples), 1),
        "dagre_ms_p50": round(statistics.median(s["dagre_ms"] for s in samples), 1),
        "editor_ready_ms_p50": round(statistics.median(s["editor_ready_ms"] for s in samples), 1),
        "all_ready_ms_p50": round(statistics.median(s["all_ready_ms"] for s in samples), 1),
        "target_ms": TARGET_MS,
        "met": max(drawn) <= TARGET_MS,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        (
            "graph drawn (p50 / max)",
            f"{result['graph_drawn_ms_p50']} / {result['graph_drawn_ms_max']} ms",
        ),
        ("of which layout in the worker (p50)", f"{result['layout_ms_p50']} ms"),
        ("of which dagre itself (p50)", f"{result['dagre_ms_p50']} ms"),
        ("of which SVG drawing (p50)", f"{result['svg_ms_p50']} ms"),
        ("editor ready (filled, marked valid) (p50)", f"{result['editor_ready_ms_p50']} ms"),
        ("graph and editor both ready (p50)", f"{result['all_ready_ms_p50']} ms"),
        (
            "target (graph drawn, max)",
            f"<= {result['target_ms']:.0f} ms: {'met' if result['met'] else 'NOT met'}",
        ),
        ("load average", " ".join(map(str, result["loadavg"]))),
    ]
    head = f"studio load, {result['nodes']} nodes ({result['shape']}), {result['runs']} cold runs\n"
    return head + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.studio", description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="stages",
        help="stages: a wide quiz ~30 questions deep; chain: one question per rank",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per page load")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.nodes, args.runs, args.timeout, args.shape)
    text = json.dumps(result, indent=2)
    print(text)
    print(table(result))
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
