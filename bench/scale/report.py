"""The scale run as markdown tables (bench/results/scale.md)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def _lat(s: Json) -> str:
    """p50 / p99 (max, count)."""
    if not s or not s.get("count"):
        return "-"
    return f"p50 {s['p50_ms']} / p99 {s['p99_ms']} (max {s['max_ms']}, n={s['count']})"


def _lags(lags: Json | None) -> str:
    if lags is None:
        return "not recorded"
    if not lags:
        return "none"
    return "; ".join(f"{k} {v['late_ticks']}, {v['longest_s']}" for k, v in lags.items())


def markdown(doc: Json) -> str:
    s = doc["summary"]
    m = doc["machine"]
    ramp = s["ramp"]
    lines = [
        f"# bench.scale: {ramp['opened']:,} visitor sockets ({doc['timestamp']})",
        "",
        f"{m['nproc']} cores ({m['cpu']}), load average at start {m['loadavg_at_start']}; "
        f"plan: gateways {doc['plan']['gateways']} (gateway-{doc['plan']['victim']} killed), "
        f"load generators {doc['plan']['loadgens']}; {doc['config']['processors']} processor(s), "
        f"{doc['config']['partitions']} partitions; run {doc['duration_s']} s.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    active = doc["config"]["active"]
    errs = s["errors"]
    rows = [
        ("sockets opened (each started a conversation)",
         f"{ramp['opened']:,} (failed {ramp['failed']})"),
        ("time to open them all", f"{ramp['seconds']} s ({ramp['per_s']}/s)"),
        ("connect-to-first-message during the ramp, ms", _lat(ramp["connect_to_first_message"])),
        (f"press-to-reply of the {active} active visitors, ms (target p99 <= 100)",
         _lat(s["press_to_reply"])),
        ("the same, p99 per 10 s of the active phase, ms",
         ", ".join(str(w["p99_ms"]) for w in s.get("press_to_reply_by_10s", [])) or "-"),
        ("start-to-reply of the active visitors' new conversations, ms", _lat(s["start_to_reply"])),
        ("probe connect-to-first-message while all are held, ms",
         _lat(s["probe_connect_to_first_message"])),
        ("errors (target 0)", f"{errs['errors']} {errs['by_kind'] or ''}"),
        ("retried attempts (opens or reconnects that failed, then retried)",
         str(sum(errs["retried_attempts"].values()))),
        ("transcripts checked by a resume from seq 0 / mismatched",
         f"{s['transcripts']['checked']} / {s['transcripts']['mismatched']}"),
        ("conversations played to the end by the active visitors",
         str(s["conversations_completed"])),
        ("held sockets closed under their visitor (type, close code)",
         str(s.get("held_sockets_closed_under_them") or "none")),
        ("load generators' own late ticks (>= 0.2 s) per phase: count, longest s",
         _lags(s.get("loadgen_loop_lags"))),
    ]  # fmt: skip
    f = s.get("failover")
    if f:
        rows += [
            ("kill -9 of one gateway: sockets lost / resumed / never",
             f"{f['lost']:,} / {f['resumed']:,} / {f['never_resumed']} (expected {f['expected']})"),
            ("time from the kill until all resumed",
             f"{f['all_resumed_s']} s ({f['resumed_per_s']}/s)"),
            ("resumed after the kill, ms", _lat(f["resumed_after_kill_ms"])),
            ("in-flight presses: applied before the loss / sent again",
             f"{f['presses_applied_across_loss']} / {f['presses_resent']}"),
            ("press-to-reply during the failover, ms", _lat(s["press_to_reply_during_failover"])),
            ("press-to-reply after the failover, ms", _lat(s["press_to_reply_after_failover"])),
        ]  # fmt: skip
    lines += [f"| {label} | {value} |" for label, value in rows]
    lines += ["", "## Memory (RSS after the ramp) and CPU (cores = CPU s per wall s)", ""]
    names = list(s["rss_mib"].keys())
    windows = [("ramp", s.get("ramp_cpu")), ("idle", s["idle_cpu"]), ("active", s["active_cpu"])]
    if f:
        windows.append(("failover", f["cpu"]))
    lines += [
        "| process | sockets | RSS MiB | KiB/socket | growth KiB/socket | "
        + " | ".join(f"{w} cores" for w, _ in windows)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(windows),
    ]
    for name in names:
        mem = s["memory_after_ramp"].get(name, {})
        growth = s["memory_growth_kib_per_socket"].get(name)
        cells = [
            "-" if not w or w.get("cores", {}).get(name) is None else f"{w['cores'][name]:.3f}"
            for _, w in windows
        ]
        lines.append(
            f"| {name} | {mem.get('sockets', '-')} | {s['rss_mib'].get(name)} | "
            f"{mem.get('kib_per_socket', '-')} | {'-' if growth is None else growth} | "
            + " | ".join(cells)
            + " |"
        )
    for label, w in windows:
        if w:
            lines.append(
                f"\n{label}: {w['seconds']} s; ours {w['ours']} cores, machine {w['machine']}, "
                f"others {w['others']}; load {w['loadavg_before']} -> {w['loadavg_after']}"
            )
    idle = s["idle_cpu"]
    gw = [n for n in names if n.startswith("gateway")]
    held = sum(s["memory_after_ramp"].get(n, {}).get("sockets", 0) or 0 for n in gw)
    gw_cores = sum(idle["cores"].get(n) or 0 for n in gw)
    if held:
        lines.append(
            f"\nIdle: the gateways spend {gw_cores:.3f} cores on {held:,} sockets = "
            f"{gw_cores * 1000 * 10_000 / held:.1f} ms CPU per second per 10k sockets."
        )
    by_phase = s["errors"].get("by_phase")
    if by_phase:
        lines += ["", "Errors by phase: " + "; ".join(f"{n} {k}" for n, k in by_phase.items())]
    if s["errors"]["examples"]:
        lines += ["", "## Error examples", ""] + [f"* `{e}`" for e in s["errors"]["examples"]]
    problems = doc["services"]["log_problems"]
    if problems:
        lines += ["", "## Service log problems", ""]
        for name, found in problems.items():
            lines += [f"* {name}: `{found[0]}` ({len(found)} lines)"]
    return "\n".join(lines) + "\n"
