"""The gateway's own view: ``leadflow_gateway_command_seconds`` (bus send to reply,
inside the gateway), scraped from ``/metrics`` before and after a run. The buckets are
coarse, so quantiles are bucket upper bounds ("p50 <= 5 ms")."""

from __future__ import annotations

import re

import aiohttp

from bench.kafka.sysstats import Json

METRIC = "leadflow_gateway_command_seconds_bucket"
ANSWER_TYPES = ("PressButton", "SubmitLead")
_LINE = re.compile(METRIC + r"\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)")
# type -> upper bound (s) -> cumulative count
Buckets = dict[str, dict[float, float]]


async def scrape(session: aiohttp.ClientSession, port: int) -> Buckets:
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return {}
    out: Buckets = {}
    for match in _LINE.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        le = labels.get("le", "")
        bound = float("inf") if le == "+Inf" else float(le)
        out.setdefault(labels.get("type", ""), {})[bound] = float(match.group("value"))
    return out


def _merge(scrapes: list[Buckets]) -> dict[float, float]:
    merged: dict[float, float] = {}
    for buckets in scrapes:
        for kind in ANSWER_TYPES:
            for bound, count in buckets.get(kind, {}).items():
                merged[bound] = merged.get(bound, 0.0) + count
    return merged


def delta_quantiles(before: list[Buckets], after: list[Buckets]) -> Json:
    """Presses and leads answered during the run, and bucket bounds of p50/p90/p99."""
    b, a = _merge(before), _merge(after)
    bounds = sorted(a)
    cumulative = [(bound, a[bound] - b.get(bound, 0.0)) for bound in bounds]
    total = cumulative[-1][1] if cumulative else 0.0
    out: Json = {"count": int(total)}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        le = next((bound for bound, count in cumulative if count >= q * total), None)
        key = f"{name}_le_ms"
        out[key] = (
            None
            if le is None or total == 0
            else ("inf" if le == float("inf") else round(le * 1000, 1))
        )
    return out
