"""The markdown summary of ``bench/results/widget.json``."""

from __future__ import annotations

from typing import Any

from bench.kafka.report import fmt, table

STAGES = {
    "click_to_visible": "click -> first bot message visible (**target p95 <= 100 ms**)",
    "click_to_in_dom": "click -> first bot message in the DOM",
    "click_to_panel_shown": "click -> the open (empty) panel's first frame",
    "socket_head_start": "socket opened before the click by (the warm socket's head start)",
    "socket_open": "socket created -> open (the WebSocket handshake)",
    "click_to_start_sent": "click -> start sent (what is left of the handshake)",
    "start_sent_to_first_frame": "start sent -> first frame (server and network)",
    "first_frame_to_message_frame": "first frame (session) -> message frame",
    "message_frame_to_in_dom": "message frame -> message in the DOM (the widget)",
    "in_dom_to_visible": "in the DOM -> next frame (rendering)",
}


def _latency(report: dict[str, Any]) -> list[str]:
    rows = [
        [label] + [report["latency_ms"][key][f"{p}_ms"] for p in ("min", "p50", "p95", "p99")]
        for key, label in STAGES.items()
    ]
    rows[0].append(report["pass"])
    for row in rows[1:]:
        row.append(None)
    return table(["interval (ms)", "min", "p50", "p95", "p99", "verdict"], rows)


def _wire(wire: dict[str, Any]) -> list[str]:
    source = wire["unminified"]["identity"]
    rows: list[list[Any]] = [["unminified widget.js (as served before)", "identity", source, "-"]]
    rows += [
        [f"unminified widget.js, {coding} (reference)", coding, size, f"{size / source:.0%}"]
        for coding, size in wire["unminified"].items()
        if coding != "identity"
    ]
    for kind, label in (("widget", f"/{wire['hashed_name']}"), ("loader", "/widget.js (loader)")):
        for coding, row in wire[kind].items():
            rows.append([label, coding, row["body_bytes"], f"{row['body_bytes'] / source:.0%}"])
    return table(["file", "encoding", "body bytes", "of unminified"], rows)


def _views(report: dict[str, Any]) -> list[str]:
    rows = []
    for which, label in (("cold", "first visit (empty cache)"), ("warm", "second page view")):
        view = report["page_views"][which]
        res = view["resources"]
        rows.append(
            [
                label,
                view["launcher_ready"]["p50_ms"],
                view["launcher_ready"]["p95_ms"],
                res.get("loader", {}).get("transfer_bytes"),
                res.get("widget", {}).get("transfer_bytes"),
            ]
        )
    header = ["page view", "launcher ready p50 (ms)", "p95", "loader bytes", "widget bytes"]
    return table(header, rows)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"## Widget delivery ({report['when']}, {report['runs']} visitors, "
        f"{report['warmup_runs']} warm-up, pointer on the launcher {report['hover_ms']:g} ms "
        f"before the press{', reduced motion' if report['reduced_motion'] else ''})",
        "",
        f"{report['browser']} against `leadflow serve` on loopback; {m['cores']} cores "
        f"({m['cpu']}), load average {fmt(m['load_at_start'][0])} at start, "
        f"{fmt(m['load_at_end'][0])} at the end; niceness {m['niceness']}.",
        "",
        *_latency(report),
        "",
        f"The first bubble was the instant opening (fetched with the page, shown before"
        f" the server's message frame came) in {report.get('opening_first_share', 0):.0%}"
        " of the visits: there, message frame -> message in the DOM is negative.",
        "",
        "Bytes over the wire (bodies; each response adds about 300 bytes of headers):",
        "",
        *_wire(report["wire"]),
        "",
        "What the page loaded (Resource Timing, medians; transfer bytes include headers,"
        " 0 = from the browser's cache):",
        "",
        *_views(report),
        "",
    ]
    return "\n".join(lines)
