"""The raw measurements of a run (``bench.scale.run.drive``) as its summary: memory
per socket, CPU per window, latencies, errors by phase, failover times, transcripts,
and the targets, the ``summary`` of bench/results/scale.json and of its markdown.

The folding itself is ``bench.scale.results`` (pure, unit-tested); this module picks
the windows: steady-state latencies are the active window's, the failover's are split
into during (from the kill until every socket resumed, or ``--failover-timeout``)
and after. Why a socket lost before the kill or never resumed counts as an error
here: ``results.failover`` reports them as failover numbers, but the target (no
error) covers them too.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.scale import results
from bench.scale.plan import Plan
from bench.scale.stack import Stack

Json = dict[str, Any]
TARGET_PRESS_P99_MS = 100.0


def phases(raw: Json) -> list[tuple[str, float, float]]:
    """The run's phases on the machine's monotonic clock, for errors by phase."""
    marks = [("ramp", raw["ramp_began"]), ("idle", raw["idle_began"]),
             ("active", raw["active_began"]), ("between", raw["active_ended"])]  # fmt: skip
    if raw.get("killed_at") is not None:
        marks += [("failover", raw["killed_at"]), ("after failover", raw["failover_ended"])]
    marks.append(("checks", raw["stopped_at"]))
    ends = [at for _, at in marks[1:]] + [float("inf")]
    return [(name, at, end) for (name, at), end in zip(marks, ends, strict=True)]


def summarize(args: argparse.Namespace, layout: Plan, raw: Json, stack: Stack) -> Json:
    answers = raw["answers"]
    a0, a1 = raw["active_began"], raw["active_ended"]
    killed = raw.get("killed_at")
    held = {k: v or 0 for k, v in raw["held_after_ramp"].items()}
    held.update({f"loadgen-{i}": sum(c) for i, c in enumerate(layout.loadgens)})
    press_steady = results.latencies(answers, "press", a0, a1)
    run_phases = phases(raw)
    errs = results.errors(answers, run_phases)
    summary: Json = {
        "ramp": results.ramp(answers),
        "memory_after_ramp": results.per_socket_kib(raw["rss_held_kib"], held),
        "memory_growth_kib_per_socket": results.growth_kib(
            raw["rss_before_kib"], raw["rss_held_kib"], held
        ),
        "rss_mib": {
            k: None if v is None else round(v / 1024, 1) for k, v in raw["rss_held_kib"].items()
        },
        "ramp_cpu": raw["ramp_cpu"],
        "idle_cpu": raw["idle_cpu"],
        "active_cpu": raw["active_cpu"],
        "press_to_reply": press_steady,
        "press_to_reply_by_10s": results.latencies_by_window(answers, "press", a0, a1),
        "start_to_reply": results.latencies(answers, "start", a0, a1),
        "probe_connect_to_first_message": results.latencies_flat(answers, "probe_ms"),
        "errors": errs,
        "loadgen_loop_lags": results.loop_lags(answers, run_phases),
        "transcripts": {
            "checked": sum(a["transcripts"]["checked"] for a in answers),
            "mismatched": sum(a["transcripts"]["mismatched"] for a in answers),
        },
        "conversations_completed": sum(a["conversations_completed"] for a in answers),
        "held_sockets_closed_under_them": results.closes(answers),
        "ramp_timed_out": raw.get("ramp_timed_out", False),
    }
    if killed is not None:
        summary["failover"] = results.failover(answers, killed, raw.get("expected_lost"))
        summary["failover"]["cpu"] = raw["failover_cpu"]
        summary["press_to_reply_during_failover"] = results.latencies(
            answers, "press", killed, raw["failover_ended"]
        )
        summary["press_to_reply_after_failover"] = results.latencies(
            answers, "press", raw["failover_ended"], raw["stopped_at"]
        )
        summary["held_after_kill"] = raw["held_after_kill"]
        summary["rss_after_kill_mib"] = {
            k: None if v is None else round(v / 1024, 1)
            for k, v in raw["rss_after_kill_kib"].items()
        }
        # a socket lost before the kill, or one that never came back, is an error
        f = summary["failover"]
        for kind, count in (("lost_before_kill", f["lost_before_kill"]),
                            ("never_resumed", f["never_resumed"])):  # fmt: skip
            if count:
                errs["by_kind"][kind] = count
                errs["errors"] += count
    p99 = press_steady.get("p99_ms")
    summary["targets"] = {
        "press_p99_le_100ms": None if p99 is None else p99 <= TARGET_PRESS_P99_MS,
        "errors_zero": errs["errors"] == 0 and summary["transcripts"]["mismatched"] == 0,
        "all_held": summary["ramp"]["opened"] == layout.total,
    }
    return summary
