"""The markdown report: all phases side by side, the targets, the sweep, then details.

The side-by-side table comes first on purpose: the target phase passing means
little without the busier phases beside it, and none of the numbers mean much
without the echo floor and the CPU line next to them.
"""

from __future__ import annotations

from typing import Any

from bench.embedded.stats import Json, ratio

VERDICT = {True: "PASS", False: "FAIL", None: "n/a"}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def _cells(*values: Any) -> str:
    return "| " + " | ".join(_fmt(v) for v in values) + " |"


def _cores(cpu: Json) -> str:
    keys = ("server_cores", "loadgen_cores", "other_processes_cores")
    return " / ".join(_fmt(cpu.get(k)) for k in keys)


def _header(result: Json) -> list[str]:
    m, cfg = result["machine"], result["config"]
    load = m.get("loadavg_at_start") or []
    return [
        f"### Leadflow embedded server vs bare aiohttp echo: {cfg['visitors']} visitors, "
        f"{m['nproc']} CPUs ({m['cpu_model'] or 'unknown CPU'}), Python {m['python']}, "
        f"aiohttp {m['aiohttp']}, load average at start {_fmt(load[0] if load else None)}",
        "",
        "Latencies in ms, measured by the load generator on the same machine. Echo = bare "
        "aiohttp echo server (256-byte frames) replaying the same sockets, frames and think "
        "times. Cores = CPU cores kept busy by server / load generator / everything else.",
    ]


SUMMARY_HEAD = (
    "| phase | pacing | nominal presses/s | echo presses/s | Leadflow presses/s "
    "| press p50 | press p99 | echo p99 | x p99 | connect p95 | echo connect p95 "
    "| cores (Leadflow run) | targets |",
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
)


def _summary_row(name: str, phase: Json, verdict: str) -> str:
    ours, base = phase["leadflow"], phase["echo"]
    lo, le = ours["latency_ms"], base["latency_ms"]
    press, echo_press = lo["press_to_reply"], le["press_to_reply"]
    connect = lo.get("connect_to_first_message", {})
    echo_connect = le.get("connect_to_first_message", {})
    return _cells(
        f"**{name}** (target)" if phase["judged"] else name,
        phase["pacing"],
        phase["nominal_presses_per_s"],
        base["presses_per_s"],
        ours["presses_per_s"],
        press.get("p50_ms"),
        press.get("p99_ms"),
        echo_press.get("p99_ms"),
        ratio(press, echo_press, "p99_ms"),
        connect.get("p95_ms"),
        echo_connect.get("p95_ms"),
        _cores(ours["cpu"]),
        verdict,
    )


def _summary(result: Json) -> list[str]:
    overall = [t["pass"] for t in result["targets"]]
    judged = VERDICT[None if None in overall else all(overall)]
    lines = ["", *SUMMARY_HEAD]
    for name, phase in result["phases"].items():
        lines.append(_summary_row(name, phase, judged if phase["judged"] else "not judged"))
    return lines


def _targets(result: Json) -> list[str]:
    lines = ["", "| target (human phase, Leadflow) | measured | result |", "|---|--:|---|"]
    for target in result["targets"]:
        measured = target["measured_ms"]
        shown = "-" if measured is None else f"{_fmt(measured)} ms"
        lines.append(_cells(target["name"], shown, VERDICT[target["pass"]]))
    return lines


def _capacity_targets(result: Json) -> list[str]:
    targets = result.get("capacity_targets", [])
    if not targets:
        return []
    lines = ["", "| target (issue 17) | measured | result | what it costs |", "|---|--:|---|---|"]
    for target in targets:
        measured = target["measured"]
        shown = "-" if measured is None else f"{_fmt(measured)} {target['unit']}"
        cost = ""
        if "server_cpu_ms_per_command" in target:
            cost = (
                f"{target['server_cpu_ms_per_command']:.3f} ms of server CPU per command,"
                f" {target['server_cores']:.2f} cores used; one full core:"
                f" {_fmt(target['presses_per_s_at_one_core'])} presses/s"
            )
        lines.append(_cells(target["name"], shown, VERDICT[target["pass"]], cost))
    return lines


def _sweep(sweep: Json) -> list[str]:
    lines = [
        "",
        f"**Sweep** (capacity at the latency target, {sweep['target']}):",
        "",
        "| step | pacing | nominal presses/s | echo presses/s (offered) | Leadflow presses/s "
        "| press p50 | press p99 | echo p99 | connect p95 | cores | within target |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for step in sweep["steps"]:
        ours, lo = step["leadflow"], step["leadflow"]["latency_ms"]
        lines.append(
            _cells(
                step["name"],
                step["pacing"],
                step["nominal_presses_per_s"],
                step["offered"],
                ours["presses_per_s"],
                lo["press_to_reply"].get("p50_ms"),
                lo["press_to_reply"].get("p99_ms"),
                step["echo"]["latency_ms"]["press_to_reply"].get("p99_ms"),
                lo.get("connect_to_first_message", {}).get("p95_ms"),
                _cores(ours["cpu"]),
                "yes" if step["within_target"] else "no",
            )
        )
    lines += ["", _capacity_sentence(sweep)]
    return lines


def _capacity_sentence(sweep: Json) -> str:
    if sweep["capacity_step"] is None:
        return "Capacity at the target: below the lowest step (its p99 is over the target)."
    at_least = "at least " if sweep["all_steps_within_target"] else ""
    return (
        f"Capacity at the target: {at_least}{_fmt(sweep['capacity_offered_presses_per_s'])} "
        f"presses/s offered (step {sweep['capacity_step']}, nominal "
        f"{_fmt(sweep['capacity_nominal_presses_per_s'])}); first step over the target: "
        f"{sweep['first_failing_step'] or 'none'}."
    )


def _row(label: str, ours: Json, base: Json | None) -> str:
    keys = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms", "max_ms")
    cells: list[Any] = [label, ours.get("count"), *(ours.get(k) for k in keys)]
    if base is None:
        cells += ["-"] * 4
    else:
        cells += [
            base.get("p50_ms"),
            base.get("p99_ms"),
            ratio(ours, base, "p50_ms"),
            ratio(ours, base, "p99_ms"),
        ]
    return _cells(*cells)


def _run_line(name: str, phase: Json) -> str:
    ours, base = phase["leadflow"], phase["echo"]
    cut = ours["rounds_cut_by_deadline"]
    return (
        f"**{name}** ({phase['pacing']}): Leadflow {_fmt(ours['presses_per_s'])} presses/s "
        f"({ours['presses'] + ours['leads']} presses, {ours['conversations_started']} "
        f"conversations, {cut} cut by the deadline, in {ours['wall_s']:.1f} s); echo "
        f"{_fmt(base['presses_per_s'])} round trips/s in {base['wall_s']:.1f} s. Cores "
        f"{_cores(ours['cpu'])} (echo run: {_cores(base['cpu'])}); load-generator loop lag "
        f"p99 {_fmt(ours['loadgen_loop_lag_ms'].get('p99_ms'))} ms; server wrote "
        f"{_fmt(ours['server_io_mb'].get('write_bytes'))} MB to storage."
    )


def _gateway_line(ours: Json) -> list[str]:
    inside = ours.get("server_side", {}).get("command_seconds", {})
    if not inside:
        return []
    parts = [
        f"{ctype} mean {_fmt(h['mean_ms'])}, p50 <= {_fmt(h['p50_le_ms'])}, "
        f"p99 <= {_fmt(h['p99_le_ms'])}"
        for ctype, h in inside.items()
    ]
    return [
        "",
        "Gateway's own command histogram (bus send to reply, inside the server; "
        "bucket upper bounds): " + "; ".join(parts) + ".",
    ]


def _details(name: str, phase: Json) -> list[str]:
    lo, le = phase["leadflow"]["latency_ms"], phase["echo"]["latency_ms"]
    lines = [
        "",
        _run_line(name, phase),
        "",
        "| metric | n | p50 | p90 | p95 | p99 | p99.9 | max "
        "| echo p50 | echo p99 | x p50 | x p99 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        _row("press-to-reply (press+lead)", lo["press_to_reply"], le["press_to_reply"]),
        _row("  press only", lo.get("press", {}), None),
        _row("  lead only", lo.get("lead", {}), None),
        _row(
            "connect-to-first-message",
            lo.get("connect_to_first_message", {}),
            le.get("connect_to_first_message", {}),
        ),
        _row("  ws handshake", lo.get("handshake", {}), le.get("handshake", {})),
        _row("  start-to-first-message", lo.get("start_to_first_message", {}), None),
    ]
    return lines + _gateway_line(phase["leadflow"])


def _problems(result: Json) -> list[str]:
    found = failures(result)
    return ["", "Errors, anomalies, event-log mismatches: " + ("; ".join(found) or "none") + "."]


def failures(result: Json) -> list[str]:
    """What makes the run fail (exit status 1): errors, anomalies, a log that disagrees."""
    runs = [(name, p) for name, p in result["phases"].items()]
    runs += [(s["name"], s) for s in result.get("sweep", {}).get("steps", [])]
    out = [
        f"{name}/{who}: {kind} {run[who][kind]}"
        for name, run in runs
        for who in ("leadflow", "echo")
        for kind in ("errors", "anomalies")
        if run[who][kind]
    ]
    return out + [f"integrity: {m}" for m in result["integrity"]["mismatches"]]


def markdown(result: Json) -> str:
    lines = _header(result) + _summary(result) + _targets(result) + _capacity_targets(result)
    if "sweep" in result:
        lines += _sweep(result["sweep"])
    for name, phase in result["phases"].items():
        lines += _details(name, phase)
    lines += _problems(result)
    return "\n".join(lines)
