"""The markdown table of a run (bench/results/registry.md)."""

from __future__ import annotations

from typing import Any

from bench.registry.core import Json


def _row(name: str, s: Json, extra: str = "") -> str:
    if not s.get("count"):
        return f"| {name} | 0 | {s.get('missed', 0)} | - | - | - | - | {extra} |"
    cells = " | ".join(f"{s[k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
    return f"| {name} | {s['count']} | {s['missed']} | {cells} | {extra} |"


def _arm(title: str, arm: Json) -> list[str]:
    summ, ver = arm["summary"], arm["verdict"]
    verdict = f"p99 {ver['p99_ms']} ms vs {ver['target_p99_ms']:.0f} ms: " + (
        "**pass**" if ver["pass"] else "**FAIL**"
    )
    lines = [
        f"### {title}",
        "",
        "| ms | n | missed | p50 | p95 | p99 | max | |",
        "|---|---|---|---|---|---|---|---|",
        _row(
            "**all covered**, from the publish's answer", summ["all_covered_after_answer"], verdict
        ),
        _row("all covered, from the request sent", summ["all_covered_after_sent"]),
        _row("publish HTTP round trip", summ["publish_http"]),
    ]
    for key, s in summ["first_after_answer"].items():
        lines.append(_row(f"first new-version conversation, {key}", s))
    lines.append(
        _row("baseline: one start (connect to greeting), no publish", arm["baseline_start"]["all"])
    )
    cpu: Any = arm["cpu"]
    starts = summ.get("starts_per_publish", {})
    lines += [
        "",
        f"Starts per publish: median {starts.get('p50')}, max {starts.get('max')}; "
        f"stale greetings after the answer: {summ['stale_starts']}; older than the "
        f"previous version: {summ['foreign_starts']}; non-201 publishes: {summ['non_201']}; "
        f"errors: {len(arm['errors'])}.",
        f"CPU cores during the publishes: {cpu['cores']} (machine {cpu['machine']}, "
        f"others {cpu['others']}); load average before {cpu['loadavg_before']}, "
        f"after {cpu['loadavg_after']}.",
    ]
    if "partitions_by_processor" in arm:
        lines.append(
            f"Commands partitions {arm['partitions']}, by processor "
            f"{arm['partitions_by_processor']}; rebalanced during the run: "
            f"{arm['rebalanced_during_run']}; commands read back from the topic: "
            f"{arm['attribution_check']['records']}, in another partition than computed: "
            f"{arm['attribution_check']['mismatched']}."
        )
    return [*lines, ""]


def markdown(doc: Json) -> str:
    m = doc["machine"]
    lines = [
        f"## bench.registry ({doc['started_at']}, commit {doc['git'].get('commit', '')[:10]})",
        "",
        f"{m['nproc']} cores ({m['cpu_model']}), load average at start "
        f"{[round(x, 2) for x in m['loadavg_at_start']]}, at end {doc['loadavg_at_end']}; "
        f"{doc['seconds']} s.",
        "",
    ]
    if "embedded" in doc:
        lines += _arm("embedded (`leadflow serve`)", doc["embedded"])
    if "distributed" in doc:
        lines += _arm(
            "distributed (2 gateways, 2 processors, projector's admin API)", doc["distributed"]
        )
    return "\n".join(lines)
