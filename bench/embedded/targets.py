"""issue 17's embedded targets beside the latency ones: throughput of one process
(the saturated phase) and bytes written to storage per command (the judged, human
phase), with the CPU per command that explains a miss. Pure."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

TARGET_PRESSES_PER_S = 2500.0
TARGET_WRITE_KB_PER_COMMAND = 10.0


def _commands(leadflow: Json) -> int:
    turns = leadflow["presses"] + leadflow.get("answers", 0) + leadflow["leads"]
    return int(leadflow["conversations_started"] + turns)


def evaluate_capacity_targets(phases: dict[str, Json]) -> list[Json]:
    """Throughput (saturated phase) and storage bytes per command (judged phase),
    with what they cost: the server's CPU per command and cores used, and the
    presses/s one full core would give at that CPU per command."""
    out: list[Json] = []
    saturated = phases.get("saturated", {}).get("leadflow")
    if saturated is not None:
        commands = max(1, _commands(saturated))
        cpu_ms = 1000.0 * saturated["cpu"]["server_s"] / commands
        turns = saturated["presses"] + saturated.get("answers", 0) + saturated["leads"]
        per_press = commands / max(1, turns)
        out.append(
            {
                "name": f"presses/s of one process >= {TARGET_PRESSES_PER_S:g} (saturated)",
                "unit": "presses/s",
                "limit": TARGET_PRESSES_PER_S,
                "measured": saturated["presses_per_s"],
                "pass": saturated["presses_per_s"] >= TARGET_PRESSES_PER_S,
                "server_cores": saturated["cpu"]["server_cores"],
                "server_cpu_ms_per_command": round(cpu_ms, 3),
                "presses_per_s_at_one_core": round(1000.0 / cpu_ms / per_press, 1),
            }
        )
    judged = next((p["leadflow"] for p in phases.values() if p["judged"]), None)
    if judged is not None:
        commands = max(1, _commands(judged))
        written = judged.get("server_io_mb", {}).get("write_bytes")
        kb = None if written is None else written * 1e6 / 1024 / commands
        out.append(
            {
                "name": f"written to storage per command <= {TARGET_WRITE_KB_PER_COMMAND:g} KB"
                " (human pace)",
                "unit": "KB",
                "limit": TARGET_WRITE_KB_PER_COMMAND,
                "measured": None if kb is None else round(kb, 2),
                "pass": None if kb is None else kb <= TARGET_WRITE_KB_PER_COMMAND,
            }
        )
    return out
