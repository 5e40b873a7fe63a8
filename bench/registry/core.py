"""The pure parts of the registry benchmark: the marker a publish writes into the
flow's greeting, which processor a conversation's commands reach, and when a
publish counted as covered (the first new-version conversation on every gateway
and every processor).

No I/O here; the shell (``runs``, ``cli``) measures and this module decides."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

Json = dict[str, Any]
# the first line of the welcome node's folded text in examples/flows/solar-quote.yaml
GREETING_LINE = "Hi! ☀️ Let's find out how much you could save with solar panels."


def marker(run: str, index: int) -> str:
    """The unique first word of publish ``index``'s greeting: fixed width, so no
    marker is a prefix of another (``rb-ab12cd-007``)."""
    return f"rb-{run}-{index:03d}"


def with_greeting(flow_yaml: str, mark: str) -> str:
    """The flow document with its greeting's first line replaced by ``mark``; a
    different marker gives different content, so every publish is a new version."""
    if flow_yaml.count(GREETING_LINE) != 1:
        raise ValueError("the flow document does not hold the greeting line exactly once")
    if not mark or any(c.isspace() for c in mark):
        raise ValueError(f"a marker is one non-empty word: {mark!r}")
    return flow_yaml.replace(GREETING_LINE, mark)


def greeting_marker(text: str) -> str:
    """The first word of a greeting: the marker of the version that served it."""
    words = text.split(maxsplit=1)
    return words[0] if words else ""


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``, as
    aiokafka's), unsigned 32-bit. Written out here so this module imports no
    aiokafka (the unit tier refuses it); the run checks it against the topic."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = 0x9747B28C ^ len(data)
    whole = len(data) & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def partition_of(key: str, partitions: int) -> int:
    """The commands partition of a conversation: the gateway keys each command by
    its conversation id, and aiokafka's DefaultPartitioner (as Java's) maps a key
    to ``murmur2(key) & 0x7fffffff % partitions``."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def assigned_partitions(log_text: str) -> list[list[int]]:
    """Every assignment a processor logged (``partitions assigned``, JSON lines), in order."""
    out: list[list[int]] = []
    for line in log_text.splitlines():
        if "partitions assigned" not in line:
            continue
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(body, dict) and body.get("msg") == "partitions assigned":
            out.append([int(p) for p in body.get("partitions", [])])
    return out


def owners(assignments: Mapping[str, Sequence[int]], partitions: int) -> dict[int, str]:
    """Partition -> processor; raises when a partition has no owner or two."""
    out: dict[int, str] = {}
    for name, owned in assignments.items():
        for p in owned:
            if p in out:
                raise ValueError(f"partition {p} is owned by {out[p]} and {name}")
            out[p] = name
    missing = sorted(set(range(partitions)) - set(out))
    if missing:
        raise ValueError(f"partitions without an owner: {missing}")
    return out


@dataclass(frozen=True, slots=True)
class Start:
    """One new visitor's start after a publish: where it ran, what it was greeted
    with, and when (seconds on the monotonic clock)."""

    gateway: str
    processor: str
    sent: float
    greeted: float
    marker: str


def coverage(
    starts: Iterable[Start], mark: str, gateways: Iterable[str], processors: Iterable[str]
) -> dict[str, float | None]:
    """For each gateway and processor (``gateway:NAME``, ``processor:NAME``), the
    moment the first conversation greeted with ``mark`` was greeted; None if none was."""
    first: dict[str, float | None] = {f"gateway:{g}": None for g in gateways}
    first.update({f"processor:{p}": None for p in processors})
    for start in starts:
        if start.marker != mark:
            continue
        for key in (f"gateway:{start.gateway}", f"processor:{start.processor}"):
            if key not in first:
                continue
            seen = first[key]
            if seen is None or start.greeted < seen:
                first[key] = start.greeted
    return first


def covered(first: Mapping[str, float | None]) -> bool:
    return all(t is not None for t in first.values())


def since(first: Mapping[str, float | None], origin: float) -> dict[str, float | None]:
    """The moments of :func:`coverage` as seconds after ``origin`` (None stays None)."""
    return {k: None if t is None else round(t - origin, 4) for k, t in first.items()}


def all_covered(first: Mapping[str, float | None]) -> float | None:
    """The publish's "all covered" time: the latest of its firsts, None if any is missing."""
    values = list(first.values())
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of a non-empty sample."""
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 1:
        raise ValueError("q must be in (0, 1]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def stats_s(values: Sequence[float | None]) -> Json:
    """count, missed (None: not covered in time), p50/p95/p99/max in ms of the rest."""
    got = [v for v in values if v is not None]
    out: Json = {"count": len(got), "missed": len(values) - len(got)}
    if got:
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
            out[f"{name}_ms"] = round(nearest_rank(got, q) * 1000, 1)
        out["max_ms"] = round(max(got) * 1000, 1)
    return out


def verdict(all_covered_s: Sequence[float | None], target_p99_s: float) -> Json:
    """The issue's target: p99 of "all covered" <= ``target_p99_s``; a publish not
    covered at all fails it."""
    got = [v for v in all_covered_s if v is not None]
    missed = len(all_covered_s) - len(got)
    p99 = nearest_rank(got, 0.99) if got else None
    ok = bool(got) and missed == 0 and p99 is not None and p99 <= target_p99_s
    return {
        "target_p99_ms": round(target_p99_s * 1000, 1),
        "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "missed": missed,
        "pass": ok,
    }
