"""The printed summary of a run: one markdown table per phase, and the targets."""

from __future__ import annotations

from typing import Any

from bench.procstats import Json

LATENCY_TARGET_MS = 1000.0
THROUGHPUT_TARGET = 500.0


def _ms(summary: Json, key: str) -> str:
    value = summary.get(f"{key}_ms")
    return "-" if value is None else f"{value:,.0f}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("pass" if ok else "FAIL")


def _p99_ok(summary: Json) -> bool | None:
    p99 = summary.get("p99_ms")
    return None if p99 is None else p99 <= LATENCY_TARGET_MS


def render(result: Json) -> str:
    phases: Json = result["phases"]
    lines: list[str] = []
    loadavg = result["machine"].get("loadavg_at_start")
    lines.append(f"\n## bench.delivery ({result['machine']['nproc']} cores, load {loadavg})")
    if "latency" in phases:
        run = phases["latency"]
        lat = run["latency_ms"]
        lines += [
            "",
            "### (a) lead captured -> delivered, embedded (`leadflow serve`)",
            "",
            "| leads | rate/s | delivered | p50 ms | p95 ms | p99 ms | max ms | server cores "
            "| other cores | p99 <= 1 s |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {run['leads_offered']} | {run['rate_per_s']:g} | {run['delivered']} "
            f"| {_ms(lat, 'p50')} | {_ms(lat, 'p95')} | {_ms(lat, 'p99')} | {_ms(lat, 'max')} "
            f"| {run['cpu']['server_cores']} | {run['cpu']['other_processes_cores']} "
            f"| {_verdict(_p99_ok(lat))} |",
        ]
    if "latency_kafka" in phases:
        run = phases["latency_kafka"]
        lat = run["latency_ms"]
        lines += [
            "",
            "### (a') lead captured -> delivered, distributed (gateway, processor, delivery)",
            "",
            "| leads | rate/s | delivered | p50 ms | p95 ms | p99 ms | max ms | p99 <= 1 s |",
            "|---|---|---|---|---|---|---|---|",
            f"| {run['leads_offered']} | {run['rate_per_s']:g} | {run['delivered']} "
            f"| {_ms(lat, 'p50')} | {_ms(lat, 'p95')} | {_ms(lat, 'p99')} | {_ms(lat, 'max')} "
            f"| {_verdict(_p99_ok(lat))} |",
        ]
    if "throughput" in phases:
        lines += [
            "",
            "### (b) one worker's dispatcher -> local receiver (SQLite store, real sender)",
            "",
            "| destinations x concurrency | deliveries/s | baseline req/s | ratio "
            "| worker CPU ms/delivery | baseline CPU ms/req | busy deferrals | >= 500/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, sc in phases["throughput"]["scenarios"].items():
            w, b = sc["worker"], sc["baseline"]
            lines.append(
                f"| {name} | {w['deliveries_per_s']:,.0f} | {b['requests_per_s']:,.0f} "
                f"| {sc['worker_over_baseline']} | {w['cpu']['worker_cpu_ms_per_delivery']} "
                f"| {b['cpu']['worker_cpu_ms_per_delivery']} | {w['deferred']['busy']:.0f} "
                f"| {_verdict(w['deliveries_per_s'] >= THROUGHPUT_TARGET)} |"
            )
    if "outage" in phases:
        run = phases["outage"]
        down, healthy = run["down_site"], run["healthy_site"]
        during: Any = healthy["latency_ms_during_outage_and_drain"]
        lines += [
            "",
            f"### (c) receiver down {run['outage_s']:g} s (standing for "
            f"{run['real_outage_s']:g} s, x{run['compression']:g}), "
            f"{run['rate_per_s_per_site']:g} leads/s per site",
            "",
            "| backlog | drained in s (real equiv.) | drain leads/s | peak/s "
            "| healthy p50 ms | healthy p99 ms | healthy p99 <= 1 s |",
            "|---|---|---|---|---|---|---|",
            f"| {down['leads_captured_during_outage']} | {down['backlog_drain_s']} "
            f"({down['backlog_drain_real_equivalent_s']}) | {down['backlog_drain_per_s']} "
            f"| {max(down['arrivals_per_second_after_back'] or [0])} "
            f"| {_ms(during, 'p50')} | {_ms(during, 'p99')} | {_verdict(_p99_ok(during))} |",
        ]
    return "\n".join(lines)
