"""The markdown summary of ``bench/results/export.json``."""

from __future__ import annotations

from typing import Any

from bench.kafka.report import fmt, table

LABELS = {"sqlite": "SQLite log", "kafka": "Kafka events topic"}


def _range(series: dict[str, Any]) -> str:
    rates = [r["events_per_s"] for r in series["runs"]]
    return f"{fmt(float(min(rates)))} - {fmt(float(max(rates)))}"


def markdown(report: dict[str, Any]) -> str:
    rows: list[list[Any]] = []
    for origin, res in report["results"].items():
        for kind, label in (("export", "export -> Parquet"), ("raw", "raw read (baseline)")):
            series = res[kind]
            rows.append(
                [
                    f"{LABELS[origin]}: {label}",
                    f"{report['events']:,}",
                    len(series["runs"]),
                    float(series["median_events_per_s"]),
                    _range(series),
                    series["median_seconds"],
                    series["median_cpu_seconds"],
                    float(series["median_events_per_cpu_s"]),
                    series["median_others_cores"],
                    f">= {report['target_events_per_s']:,}/s" if kind == "export" else "-",
                    res["pass"] if kind == "export" else None,
                ]
            )
    header = [
        "run",
        "events",
        "runs",
        "median events/s",
        "range",
        "median s",
        "median CPU s",
        "events / CPU-s",
        "others' cores",
        "target",
        "verdict",
    ]
    lines = [f"# `python -m bench.export` ({report['when']})", ""]
    lines += table(header, rows)
    lines.append("")
    for origin, res in report["results"].items():
        lines.append(
            f"* {LABELS[origin]}: export / raw read (median seconds): "
            f"**{res['export_over_raw_seconds']}x**"
        )
    machine = report["machine"]
    lines.append(
        f"* machine: {machine['cores']} cores ({machine['cpu']}); load average at start "
        + ", ".join(f"{v:.2f}" for v in machine["load_at_start"])
        + ", at end "
        + ", ".join(f"{v:.2f}" for v in machine["load_at_end"])
        + "; `others' cores`: CPU seconds per wall second of every other process"
        " on the machine during the run (the machine is shared; in the Kafka rows the"
        " local broker is among them); `events / CPU-s`:"
        " the export's own CPU cost, which contention does not change"
    )
    lines += [f"* {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
