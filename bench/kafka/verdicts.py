"""The targets (pass/fail), and every failure the run saw."""

from __future__ import annotations

from bench.kafka.config import (
    TARGET_P50_MS,
    TARGET_P99_MS,
    TARGET_PRESSES_PER_S,
    TARGET_RAW_RATIO,
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
