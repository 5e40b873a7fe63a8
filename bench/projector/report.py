"""The markdown summary printed at the end of a run (the JSON has everything)."""

from __future__ import annotations

from typing import Any

from bench.kafka.report import fmt, table
from bench.procstats import Json

TOP = 10


def _range(runs: list[Json]) -> str:
    rates = [r["events_per_s"] for r in runs]
    return f"{fmt(min(rates))} - {fmt(max(rates))}" if rates else "-"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _verdict(entry: Json | None, key: str = "pass") -> Any:
    return None if entry is None else entry.get(key)


def _engine_rows(engine: Json, targets: Json) -> list[list[Any]]:
    rows: list[list[Any]] = []
    cfg_batch = engine["batch"]
    labels = {
        "pipelined": f"engine -> Redis, pipelined (batches of {cfg_batch:,})",
        "baseline": "engine -> Redis, baseline (one awaited call per event)",
    }
    for mode, med in engine["medians"].items():
        runs = engine["runs"][mode]
        judged = mode == "pipelined"
        rows.append(
            [
                labels[mode],
                f"{engine['events']:,}",
                len(runs),
                med["events_per_s"],
                _range(runs),
                _s(med["projector_cpu_s_per_1k_events"]),
                _s(med["redis_cpu_s_per_1k_events"]),
                med["events_per_projector_cpu_s"],
                med["projector_cores"],
                med["redis_cores"],
                med["others_cores"],
                ">= 20,000/s" if judged else "-",
                _verdict(targets.get("engine_events_per_s")) if judged else None,
            ]
        )
    return rows


def _replay_row(replayed: Json, targets: Json) -> list[Any]:
    run = replayed["run"]
    verdict = targets.get("replay_seconds", {})
    judged = verdict.get("pass")
    shown = judged if judged is not None else f"rate {fmt(verdict.get('rate_pass'))}"
    return [
        f"Kafka replay ({run['wall_s']} s wall, {replayed['produce']['partitions']} partitions)",
        f"{run['events']:,}",
        1,
        run["events_per_s"],
        "-",
        _s(run["cpu_s_per_1k_events"].get("projector")),
        _s(run["cpu_s_per_1k_events"].get("redis")),
        run["events_per_projector_cpu_s"],
        run["cores"].get("projector"),
        run["cores"].get("redis"),
        run["cores"].get("others"),
        "1M in <= 60 s",
        shown,
    ]


def markdown(results: Json) -> str:
    engine, replayed, targets = results.get("engine"), results.get("replay"), results["targets"]
    header = [
        "run",
        "events",
        "runs",
        "median events/s",
        "range",
        "projector CPU s / 1k events",
        "Redis CPU s / 1k events",
        "events / projector CPU-s",
        "projector cores",
        "Redis cores",
        "others cores",
        "target",
        "verdict",
    ]
    rows: list[list[Any]] = []
    if engine is not None:
        rows += _engine_rows(engine, targets)
    if replayed is not None:
        rows.append(_replay_row(replayed, targets))
    lines = [
        f"# `python -m bench.projector` ({results['timestamp']})",
        "",
        *table(header, rows),
        "",
    ]
    if engine is not None:
        ratio = engine["ratio_pipelined_to_baseline"]
        lines.append(f"* pipelined / baseline (median events/s): **{fmt(ratio)}x**")
        lines.append(
            f"* read back after each pair ({engine['checks'][0]['sampled_conversations']}"
            f" conversations, {engine['checks'][0]['counter_keys']} counter hashes):"
            f" {'identical, and consistent with the log' if engine['checks_ok'] else 'MISMATCH'}"
        )
    gc_parts = []
    if engine is not None:
        gc_parts += [
            f"{mode} {fmt(med['gc_ms_per_1k_events'])}" for mode, med in engine["medians"].items()
        ]
    if replayed is not None:
        gc_parts.append(f"replay {fmt(replayed['run']['gc']['ms_per_1k_events'])}")
    lines.append(f"* garbage collector, ms per 1k events: {', '.join(gc_parts)}")
    if replayed is not None:
        run, produced = replayed["run"], replayed["produce"]
        checks = run["checks"]
        lines.append(
            f"* replay: {checks['conversations_replayed']:,} conversations replayed, "
            f"{checks['funnel_started_in_redis']:,} started in Redis's funnels, "
            f"{checks['conversations_generated']:,} generated: "
            f"{'ok' if checks['ok'] else 'FAILED'}; broker "
            f"{fmt(run['cores'].get('broker'))} cores during the replay; produced beforehand "
            f"(untimed): {produced['records']:,} records in {produced['wall_s']} s"
        )
    machine = results["machine"]
    lines.append(
        f"* machine: {machine['nproc']} cores ({machine['cpu_model']}), load average at "
        f"start {', '.join(f'{v:.2f}' for v in machine['loadavg_at_start'])}; "
        "`cores` = CPU seconds per wall second (the projector is one Python thread); "
        "`others`: every other process on the machine (in the replay row, besides the broker)"
    )
    lines += _profiles(results)
    return "\n".join(lines) + "\n"


def _profiles(results: Json) -> list[str]:
    """The py-spy summaries of the profiled (unjudged) runs, when there were any."""
    found = [
        ("pipelined engine run", (results.get("engine") or {}).get("profile")),
        ("replay", ((results.get("replay") or {}).get("profiled") or {}).get("profile")),
    ]
    out: list[str] = []
    for name, profile in found:
        if not profile or not profile.get("samples"):
            continue
        top = ", ".join(f"{frame} {pct}%" for frame, pct in profile["self_pct"][:TOP])
        out += ["", f"py-spy, {name} ({profile['samples']} samples), self time: {top}"]
    return out
