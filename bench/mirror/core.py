"""The pure part of the mirror benchmark: the send schedule, the record format and the
report (no I/O)."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from bench.procstats import summarize

Json = dict[str, Any]
_HEADER = struct.Struct(">Q")  # the record's number, then padding


def schedule(rate: float, seconds: float, tick: float = 0.01) -> list[tuple[float, int]]:
    """``(offset in seconds, records to send)`` per tick: ``rate`` records a second,
    spread evenly (the remainder carried, so the total is ``round(rate * seconds)``)."""
    ticks = max(1, round(seconds / tick))
    total = round(rate * seconds)
    out: list[tuple[float, int]] = []
    sent = 0
    for i in range(ticks):
        due = round(total * (i + 1) / ticks)
        out.append((i * tick, due - sent))
        sent = due
    return out


def record_value(number: int, size: int) -> bytes:
    """A record of ``size`` bytes (at least 8) carrying ``number``."""
    return _HEADER.pack(number) + b"x" * max(0, size - _HEADER.size)


def record_number(value: bytes) -> int:
    return int(_HEADER.unpack_from(value)[0])


def lags_ns(acked: Mapping[int, int], seen: Mapping[int, int]) -> list[int]:
    """Per record seen after its acknowledgement: seen - acked (ns)."""
    return [seen[n] - acked[n] for n in sorted(seen) if n in acked]


def report(doc: Json) -> str:
    """The text the run prints (and bench/README.md quotes): one table per mode."""
    lines: list[str] = []
    for run in doc["runs"]:
        lines += [
            f"### {run['mode']}: {run['rate']['target']:g} records/s for {run['seconds']:g} s "
            f"into {run['partitions']} partitions ({run['record_bytes']} B each; achieved "
            f"{run['rate']['achieved']:.1f}/s)",
            "",
            f"load average before {run['loadavg_before']}, after {run['loadavg_after']}",
            "",
            "| ms | n | p50 | p90 | p99 | p99.9 | max |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, label in (
            ("mirror", "**region ack -> visible on analytics** (the mirror's lag)"),
            ("region", "region ack -> visible on the region (a consumer's own delay)"),
            ("ack", "send -> region ack (acks=all)"),
        ):
            s = run["lag"][name]
            lines.append(
                f"| {label} | {s['count']} | {s['p50_ms']:.1f} | {s['p90_ms']:.1f} | "
                f"{s['p99_ms']:.1f} | {s['p99_9_ms']:.1f} | {s['max_ms']:.1f} |"
            )
        lines += [
            "",
            f"missing on analytics after {run['drain_seconds']:g} s: {run['missing']}; "
            f"copied twice: {run['duplicates']}",
            f"CPU cores while measuring: {run['cpu']}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def summaries(samples: Mapping[str, Sequence[int]]) -> Json:
    return {name: summarize(values) for name, values in samples.items()}
