"""The server's own view of a run, from its Prometheus ``/metrics``.

``leadflow_gateway_command_seconds`` times a command from bus send to reply
inside the server; set beside the load generator's press-to-reply it tells
whether time went to the server's work or to sockets, queues and the client.
"""

from __future__ import annotations

import contextlib
import math
import re

import aiohttp

from bench.embedded.stats import Json

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
COMMAND_SECONDS = "leadflow_gateway_command_seconds"
REJECTED = "leadflow_gateway_rejected_total"
MetricKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[MetricKey, float]


def parse_prometheus(text: str) -> Samples:
    """Every sample of a text exposition, keyed by name and sorted labels."""
    samples: Samples = {}
    for line in text.splitlines():
        match = _SAMPLE_RE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        key = (name, tuple(sorted(_LABEL_RE.findall(labels or ""))))
        with contextlib.suppress(ValueError):
            samples[key] = float(value)
    return samples


async def scrape(session: aiohttp.ClientSession, http_url: str) -> Samples:
    async with session.get(f"{http_url}/metrics") as resp:
        return parse_prometheus(await resp.text())


def _histogram(before: Samples, after: Samples, ctype: str) -> Json | None:
    """One command type's histogram over the run; bucket bounds stand in for percentiles."""

    def delta(key: MetricKey) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    label = (("type", ctype),)
    count = delta((f"{COMMAND_SECONDS}_count", label))
    if count <= 0:
        return None
    total = delta((f"{COMMAND_SECONDS}_sum", label))
    buckets = sorted(
        (float(dict(labels)["le"]), delta((name, labels)))
        for name, labels in after
        if name == f"{COMMAND_SECONDS}_bucket" and dict(labels).get("type") == ctype
    )
    entry: Json = {"count": int(count), "mean_ms": round(total / count * 1e3, 4)}
    for pname, q in (("p50", 0.5), ("p99", 0.99)):
        bound = next((le for le, c in buckets if c >= q * count), math.inf)
        entry[f"{pname}_le_ms"] = None if math.isinf(bound) else round(bound * 1e3, 3)
    entry["buckets_le_ms"] = {
        ("+Inf" if math.isinf(le) else f"{le * 1e3:g}"): int(c) for le, c in buckets
    }
    return entry


def server_side_delta(before: Samples, after: Samples) -> Json:
    """The gateway's own view of one run: command latency histograms and refusals."""
    types = {
        dict(labels).get("type", "") for name, labels in after if name == f"{COMMAND_SECONDS}_count"
    }
    commands = {
        ctype: entry
        for ctype in sorted(types)
        if (entry := _histogram(before, after, ctype)) is not None
    }
    rejected = {
        dict(labels).get("reason", "?"): int(value - before.get((name, labels), 0.0))
        for (name, labels), value in after.items()
        if name == REJECTED and value > before.get((name, labels), 0.0)
    }
    return {"command_seconds": commands, "rejected": rejected}
