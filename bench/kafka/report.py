"""The markdown tables printed at the end of a run (the JSON has everything)."""

from __future__ import annotations

from typing import Any

from bench.kafka.stages import STAGES
from bench.kafka.sysstats import Json

CPU_COLUMNS = ("broker", "processor", "gateway", "redis", "loadgen", "relay", "others", "machine")


def lat(run: Json | None, key: str, series: str = "press") -> Any:
    if not run:
        return None
    return run.get("latency_ms", {}).get(series, {}).get(key)


def ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b <= 0:
        return None
    return round(a / b, 2)


def floor_of(results: Json, name: str, run: Json) -> Json | None:
    """The raw or relay run offered the same pace as a Leadflow run."""
    return next((f for f in results[name]["runs"] if f["pace"] == run["pace"]), None)


def run_label(run: Json) -> str:
    pace = run["pace"]
    what = f"{pace['offered_per_s']:g}/s" if pace["mode"] == "paced" else "think 0"
    return f"{pace['mode']} N={pace['clients']} ({what})"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def pair(a: Any, b: Any) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]


def _full_path(results: Json) -> list[str]:
    rows = []
    for r in [results["leadflow_single"] or {}, *results["leadflow"]]:
        if not r:
            continue
        gw = r.get("gateway_histogram", {})
        rows.append(
            [run_label(r), r["presses_per_s"], r["commands_per_s"]]
            + [lat(r, f"{p}_ms") for p in ("p50", "p90", "p99", "p99_9")]
            + [lat(r, "p99_ms", "press_sched"), lat(r, "p50_ms", "start")]
            + [pair(gw.get("p50_le_ms"), gw.get("p99_le_ms")), sum(r["errors"].values())]
        )
    header = ["run", "presses/s", "cmds/s", "p50", "p90", "p99", "p99.9", "p99 from due"]
    header += ["start p50", "gw bus p50/p99 <=", "errors"]
    return [
        "## Full path: WebSocket -> gateway -> Kafka -> processor -> Kafka -> gateway",
        "",
        *table(header, rows),
        "",
        "ms, press (or lead) sent to the frame completing its reply. `p99 from due`: from",
        "the time the schedule wanted it sent. `gw bus`: the gateway's own histogram bucket.",
    ]


def _stages(results: Json) -> list[str]:
    rows = []
    for r in [results["leadflow_single"] or {}, *results["leadflow"]]:
        st = r.get("stages_ms")
        if st:
            cells = [pair(st[s].get("p50_ms"), st[s].get("p99_ms")) for s in STAGES]
            rows.append([run_label(r), *cells, f"{st['traced'] - st['unmatched']}"])
    if not rows:
        return []
    header = ["run", "ws -> command", "command -> events", "events -> reply", "reply -> ws"]
    title = "## Where the time goes (p50 / p99 ms, from record timestamps)"
    return ["", title, "", *table([*header, "presses"], rows)]


def _floors(results: Json) -> list[str]:
    ours, raw1, relay1 = (
        results["leadflow_single"],
        results["raw"]["single"],
        results["relay"]["single"],
    )
    rows: list[list[Any]] = []
    if ours or raw1 or relay1:
        rows.append(
            [
                "1 client, closed loop",
                pair(lat(ours, "p50_ms"), lat(ours, "p99_ms")),
                pair(lat(raw1, "p50_ms"), lat(raw1, "p99_ms")),
                None if raw1 is None else raw1["presses_per_s"],
                pair(lat(relay1, "p50_ms"), lat(relay1, "p99_ms")),
                ratio(lat(ours, "p50_ms"), lat(raw1, "p50_ms")),
                ratio(lat(ours, "p50_ms"), lat(relay1, "p50_ms")),
            ]
        )
    for r in results["leadflow"]:
        raw, relay = floor_of(results, "raw", r), floor_of(results, "relay", r)
        rows.append(
            [
                run_label(r),
                pair(lat(r, "p50_ms"), lat(r, "p99_ms")),
                pair(lat(raw, "p50_ms"), lat(raw, "p99_ms")),
                None if raw is None else raw["presses_per_s"],
                pair(lat(relay, "p50_ms"), lat(relay, "p99_ms")),
                ratio(lat(r, "p50_ms"), lat(raw, "p50_ms")),
                ratio(lat(r, "p50_ms"), lat(relay, "p50_ms")),
            ]
        )
    header = ["run", "leadflow", "raw", "raw /s", "relay", "x raw p50", "x relay p50"]
    return ["", "## Floors at the same pace (p50 / p99 ms)", "", *table(header, rows)]


def _sockets(results: Json) -> list[str]:
    rows = [
        [
            c["visitors"],
            c["open"],
            c["connect_s"],
            pair(c["connect_ms"].get("p50_ms"), c["connect_ms"].get("p99_ms")),
            c["first_starts"],
            c["first_starts_s"],
        ]
        for c in results["connects"]
    ]
    header = ["visitors", "open", "opened in s", "connect p50 / p99 ms", "first starts", "in s"]
    sizes = results.get("topic_records") or {}
    lines = ["", "## Sockets (opened before each step, not measured)", "", *table(header, rows)]
    if sizes:
        lines += ["", "Records per topic: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())]
    return lines


def _cpu_row(label: str, cpu: Json, per_command: Any) -> list[Any]:
    gateways = [v for k, v in cpu.items() if k.startswith("gateway") and v is not None]
    merged = {**cpu, "gateway": round(sum(gateways), 2) if gateways else None}
    return [label, *(merged.get(c) for c in CPU_COLUMNS), per_command]


def _cpu(results: Json) -> list[str]:
    rows = [
        _cpu_row(run_label(r), r["cpu_cores"], r["cpu_ms_per_command"].get("processor"))
        for r in results["leadflow"]
    ]
    for kind, burst in results["processor_alone"].items():
        if isinstance(burst, dict) and "cpu_cores" in burst:
            per_command = burst.get("processor_cpu_ms_per_command")
            rows.append(_cpu_row(f"processor alone: {kind}", burst["cpu_cores"], per_command))
    header = ["run", *CPU_COLUMNS, "processor CPU ms/command"]
    return ["", "## CPU cores per process (of 2)", "", *table(header, rows)]


def _processor_alone(results: Json) -> list[str]:
    rows = [
        [
            kind,
            *(b[k] for k in ("commands", "replies", "missing_replies", "produce_s", "elapsed_s")),
            b["commands_per_s"],
            pair(lat(b, "p50_ms", "reply"), lat(b, "p99_ms", "reply")),
            b["error_replies"] or "none",
        ]
        for kind, b in results["processor_alone"].items()
        if isinstance(b, dict) and "commands" in b
    ]
    header = ["burst", "commands", "replies", "missing", "produced in s", "all replies in s"]
    header += ["commands/s", "reply p50 / p99 ms", "error replies"]
    return ["", "## Processor alone (1 worker, fed straight from Kafka)", "", *table(header, rows)]


def _targets(results: Json) -> list[str]:
    targets = results.get("targets", {})
    rows: list[list[Any]] = []
    for item in targets.get("latency_at_paced_rate", {}).get("runs", []):
        what = f"p50 <= 10, p99 <= 50 ms at {item['offered_per_s']:g}/s, N={item['visitors']}"
        rows.append([what, f"p50 {fmt(item['p50_ms'])}, p99 {fmt(item['p99_ms'])}", item["pass"]])
    tp = targets.get("saturated_throughput", {})
    if tp:
        measured = f"{fmt(tp['best_presses_per_s'])}/s at N={tp['best_at_visitors']}"
        rows.append([f"{tp['target']} (saturated)", measured, tp["pass"]])
    for item in targets.get("p50_vs_raw", {}).get("runs", []):
        measured = (
            f"{fmt(item['ratio'])}x ({fmt(item['leadflow_p50_ms'])} / {fmt(item['raw_p50_ms'])});"
            f" {fmt(item['ratio_to_single_client_raw'])}x the 1-client raw p50"
        )
        rows.append([f"p50 <= 3x raw p50, paced N={item['visitors']}", measured, item["pass"]])
    vs_raw = targets.get("p50_vs_raw", {})
    if vs_raw.get("single_client_ratio") is not None:
        measured = (
            f"{fmt(vs_raw['single_client_ratio'])}x ({fmt(vs_raw['leadflow_single_client_p50_ms'])}"
            f" / {fmt(vs_raw['raw_single_client_p50_ms'])})"
        )
        rows.append(["(info) p50 / raw p50, 1 client each, unloaded", measured, None])
    rows += _targets_17(targets)
    return ["", "## Targets", "", *table(["target", "measured", "verdict"], rows)]


def _targets_17(targets: Json) -> list[list[Any]]:
    """Issue 17's: one visitor against raw, one worker's commands/s, CPU per command."""
    rows: list[list[Any]] = []
    single = targets.get("single_client_vs_raw", {})
    if single:
        measured = (
            f"{fmt(single['ratio'])}x ({fmt(single['leadflow_p50_ms'])}"
            f" / {fmt(single['raw_p50_ms'])} ms)"
        )
        rows.append(["1 visitor p50 <= 2x raw p50 (same run)", measured, single["pass"]])
    worker = targets.get("processor_worker_throughput", {})
    if worker.get("bursts"):
        measured = "; ".join(
            f"{kind} {fmt(b['commands_per_s'])}/s ({fmt(b['per_core_commands_per_s'])}/s per"
            f" core at {fmt(b['cpu_ms_per_command'])} ms CPU)"
            for kind, b in worker["bursts"].items()
        )
        rows.append([f"{worker['target']} (processor alone)", measured, worker["pass"]])
    for item in targets.get("cpu_per_command_at_paced_rate", {}).get("runs", []):
        per = ", ".join(f"{k} {fmt(v)}" for k, v in item["per_process"].items())
        rows.append(
            [
                f"<= 1.0 ms CPU/command at {item['offered_per_s']:g}/s, N={item['visitors']}",
                f"{fmt(item['total_ms'])} ms ({per})",
                item["pass"],
            ]
        )
    return rows


def _profile(profile: Json, top: int = 8) -> list[str]:
    out: list[str] = []
    for name, summary in profile.items():
        if not isinstance(summary, dict) or not summary.get("self_pct"):
            continue
        threads = ", ".join(f"{t} {p}%" for t, p in summary.get("threads_pct", []))
        out += ["", f"## py-spy: {name} ({summary['samples']} samples; threads: {threads})", ""]
        selfs = summary["self_pct"][:top]
        ours = summary.get("project_inclusive_pct", [])[:top]
        rows = [
            [*(selfs[i] if i < len(selfs) else ["", ""]), *(ours[i] if i < len(ours) else ["", ""])]
            for i in range(max(len(selfs), len(ours)))
        ]
        out += table(["top self frame", "%", "our code, inclusive", "%"], rows)
    return out


def markdown(results: Json) -> str:
    parts = [
        _full_path(results),
        _stages(results),
        _floors(results),
        _cpu(results),
        _processor_alone(results),
        _sockets(results),
        _targets(results),
        _profile(results.get("profile", {})),
    ]
    return "\n".join(line for part in parts for line in part)
