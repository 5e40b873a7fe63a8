"""The targets (pass/fail), and every failure the run saw."""

from __future__ import annotations

from typing import Any

from bench.kafka.config import (
    TARGET_CPU_MS_PER_COMMAND,
    TARGET_P50_MS,
    TARGET_P99_MS,
    TARGET_PRESSES_PER_S,
    TARGET_PROCESSOR_COMMANDS_PER_S,
    TARGET_RAW_RATIO,
    TARGET_SINGLE_RAW_RATIO,
)
from bench.kafka.report import floor_of, lat, ratio, run_label
from bench.kafka.sysstats import Json


def judge(results: Json) -> Json:
    paced = [r for r in results["leadflow"] if r["pace"]["mode"] == "paced"]
    saturated = [r for r in results["leadflow"] if r["pace"]["mode"] == "saturated"]
    latency = [
        {
            "visitors": r["visitors"],
            "offered_per_s": r["pace"]["offered_per_s"],
            "presses_per_s": r["presses_per_s"],
            "p50_ms": lat(r, "p50_ms"),
            "p99_ms": lat(r, "p99_ms"),
            "pass": (lat(r, "p50_ms") or 1e9) <= TARGET_P50_MS
            and (lat(r, "p99_ms") or 1e9) <= TARGET_P99_MS,
        }
        for r in paced
    ]
    best = max(saturated, key=lambda r: r["presses_per_s"], default=None)
    single = lat(results["raw"]["single"], "p50_ms")
    ours_single = lat(results["leadflow_single"], "p50_ms")
    ratios = []
    for r in paced:
        floor = floor_of(results, "raw", r)
        x = ratio(lat(r, "p50_ms"), lat(floor, "p50_ms"))
        ratios.append(
            {
                "visitors": r["visitors"],
                "leadflow_p50_ms": lat(r, "p50_ms"),
                "raw_p50_ms": lat(floor, "p50_ms"),
                "ratio": x,
                "ratio_to_single_client_raw": ratio(lat(r, "p50_ms"), single),
                "pass": None if x is None else x <= TARGET_RAW_RATIO,
            }
        )

    def overall(items: list[Json]) -> bool | None:
        judged = [i["pass"] for i in items if i["pass"] is not None]
        return None if not judged else all(judged)

    single_ratio = ratio(ours_single, single)
    return {
        **_first_targets(latency, best, single, ours_single, ratios, overall),
        "single_client_vs_raw": {
            "target": f"1 visitor p50 <= {TARGET_SINGLE_RAW_RATIO:g}x the raw p50 of the same run",
            "leadflow_p50_ms": ours_single,
            "raw_p50_ms": single,
            "ratio": single_ratio,
            "pass": None if single_ratio is None else single_ratio <= TARGET_SINGLE_RAW_RATIO,
        },
        "processor_worker_throughput": _processor_throughput(results),
        "cpu_per_command_at_paced_rate": _cpu_per_command(paced),
    }


def _processor_throughput(results: Json) -> Json:
    """Commands/s of the one worker fed straight from Kafka, and what one core of
    it would do (1000 / its CPU ms per command): on 2 shared cores the worker
    rarely gets a whole one."""
    bursts = {
        kind: {
            "commands_per_s": b["commands_per_s"],
            "cpu_ms_per_command": b.get("processor_cpu_ms_per_command"),
            "per_core_commands_per_s": (
                round(1000 / b["processor_cpu_ms_per_command"])
                if b.get("processor_cpu_ms_per_command")
                else None
            ),
        }
        for kind, b in results["processor_alone"].items()
        if isinstance(b, dict) and "commands_per_s" in b
    }
    worst = min((b["commands_per_s"] for b in bursts.values()), default=None)
    return {
        "target": f">= {TARGET_PROCESSOR_COMMANDS_PER_S:,.0f} commands/s per worker",
        "bursts": bursts,
        "pass": None if worst is None else worst >= TARGET_PROCESSOR_COMMANDS_PER_S,
    }


def _cpu_per_command(paced: list[Json]) -> Json:
    """CPU ms per command of the broker, the processor and the gateways together."""
    runs = []
    for r in paced:
        per = r.get("cpu_ms_per_command") or {}
        parts = [
            v for k, v in per.items() if k in ("broker", "processor") or k.startswith("gateway")
        ]
        total = round(sum(parts), 3) if parts else None
        runs.append(
            {
                "visitors": r["visitors"],
                "offered_per_s": r["pace"]["offered_per_s"],
                "per_process": per,
                "total_ms": total,
                "pass": None if total is None else total <= TARGET_CPU_MS_PER_COMMAND,
            }
        )
    judged = [x["pass"] for x in runs if x["pass"] is not None]
    return {
        "target": f"<= {TARGET_CPU_MS_PER_COMMAND:g} ms CPU per command"
        " (gateway + processor + broker)",
        "runs": runs,
        "pass": None if not judged else all(judged),
    }


def _first_targets(
    latency: list[Json],
    best: Json | None,
    single: float | None,
    ours_single: float | None,
    ratios: list[Json],
    overall: Any,
) -> Json:
    """The targets the benchmark was written for (latency and presses/s at the
    paced rate and saturated, Leadflow against raw at the same pace)."""
    return {
        "latency_at_paced_rate": {
            "target": f"p50 <= {TARGET_P50_MS:g} ms and p99 <= {TARGET_P99_MS:g} ms",
            "runs": latency,
            "pass": overall(latency),
        },
        "saturated_throughput": {
            "target": f">= {TARGET_PRESSES_PER_S:,.0f} presses/s",
            "best_presses_per_s": None if best is None else best["presses_per_s"],
            "best_at_visitors": None if best is None else best["visitors"],
            "pass": None if best is None else best["presses_per_s"] >= TARGET_PRESSES_PER_S,
        },
        "p50_vs_raw": {
            "target": f"Leadflow p50 <= {TARGET_RAW_RATIO:g}x raw p50 at the same pace",
            "raw_single_client_p50_ms": single,
            "leadflow_single_client_p50_ms": ours_single,
            "single_client_ratio": ratio(ours_single, single),
            "runs": ratios,
            "pass": overall(ratios),
        },
    }


def errors_section(results: Json) -> str:
    """Every failure the clients saw, and whether the services stayed up."""
    lines = ["", "## Errors and service health", ""]
    found = False
    runs: list[tuple[str, Json]] = [("warm-up", results.get("warmup") or {})]
    if results["leadflow_single"]:
        runs.append(("leadflow 1 visitor", results["leadflow_single"]))
    runs += [(f"leadflow {run_label(r)}", r) for r in results["leadflow"]]
    for name in ("raw", "relay"):
        if results[name]["single"]:
            runs.append((f"{name} 1 client", results[name]["single"]))
        runs += [(f"{name} {run_label(r)}", r) for r in results[name]["runs"]]
    for label, run in runs:
        if run.get("errors"):
            found = True
            lines.append(f"* {label}: {run['errors']}")
            lines += [f"  * `{e}`" for e in run.get("error_examples", [])[:3]]
    for connect in results["connects"]:
        if connect["errors"]:
            found = True
            lines.append(f"* connecting {connect['visitors']} sockets: {connect['errors']}")
    for kind, burst in results["processor_alone"].items():
        if isinstance(burst, dict) and (burst.get("missing_replies") or burst.get("error_replies")):
            found = True
            lines.append(
                f"* processor alone {kind}: {burst['missing_replies']} missing replies, "
                f"error replies {burst['error_replies']}"
            )
    if not found:
        lines.append("* no client-side errors, no missing replies")
    health = results.get("health", {})
    exits = health.get("exit_codes", {})
    dead = {k: v for k, v in exits.items() if v is not None}
    lines.append(f"* services: {'all running at the end' if not dead else f'exited: {dead}'}")
    for name, problems in health.get("log_problems", {}).items():
        for when in ("startup", "runs"):
            found = problems.get(when, [])
            if found:
                lines.append(f"* {name} log ({when}): {len(found)} error lines, e.g.")
                lines += [f"  * `{line[:300]}`" for line in found[:3]]
    return "\n".join(lines)
