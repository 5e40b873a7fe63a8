"""The markdown table of a bench.sockets run."""

from __future__ import annotations

from typing import Any

START_TARGET_MS = 0.6


def table(results: dict[str, Any]) -> str:
    opens = results["opens"]
    load = results["load_average_before"], results["load_average_after"]
    lines = [
        "# Server CPU per visitor opened, resumed and held idle",
        "",
        f"{results['at']}, {results['cores']} cores ({results['cpu']}), Python "
        f"{results['python']}; load average {load[0][0]} before, {load[1][0]} after "
        f"(1 min). {results['settings']['visitors']:,} visitors per phase x "
        f"{results['settings']['repeats']} repeats, {results['settings']['concurrency']} at "
        f"a time. `{results['command']}`" + (f" ({results['label']})" if results["label"] else ""),
        "",
        "| phase | server CPU per visitor, ms (median) | of it the main thread | per repeat | "
        "visitors/s | client p50 / p99 ms | errors |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    names = {
        "echo": "echo: connect, one frame, close",
        "start": "Leadflow `start`: connect, start, first question, close",
        "resume": "Leadflow `resume`: connect, resume, session, close",
    }
    for name, label in names.items():
        runs = opens[name]["runs"]
        last = runs[-1]
        errors = sum(sum(r["errors"].values()) for r in runs)
        lines.append(
            f"| {label} | {opens[name]['cpu_ms_per_visitor']:.3f} | "
            f"{opens[name]['main_thread_ms_per_visitor']:.3f} | "
            + ", ".join(f"{r['cpu_ms_per_visitor']:.3f}" for r in runs)
            + f" | {last['per_second']} | {last['latency'].get('p50_ms')} / "
            f"{last['latency'].get('p99_ms')} | {errors} |"
        )
    start = opens["start"]["cpu_ms_per_visitor"]
    echo = opens["echo"]["cpu_ms_per_visitor"]
    lines += [
        "",
        f"`start` costs {start:.3f} ms of server CPU ({start / echo:.1f}x the echo's); "
        f"target <= {START_TARGET_MS} ms: {'met' if start <= START_TARGET_MS else 'not met'}.",
    ]
    idle = results.get("idle")
    if idle:
        lines += [
            "",
            "| idle sockets (20 s heartbeat) | sockets | still open | window s | "
            "server CPU ms/s, no sockets | with them | added per 10k sockets, ms/s | "
            "RSS KiB per socket |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in idle.items():
            with_them = row["cpu_seconds"] / row["window_seconds"] * 1000
            lines.append(
                f"| {name} | {row['sockets']:,} | {row['still_open']:,} | "
                f"{row['window_seconds']} | {row['cpu_ms_per_second_without_sockets']} | "
                f"{with_them:.2f} | {row['added_cpu_ms_per_second_per_10k']} | "
                f"{row['rss_kib_per_socket']} |"
            )
    return "\n".join(lines) + "\n"
