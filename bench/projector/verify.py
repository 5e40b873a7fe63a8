"""Read the read models back through the store port and check them.

After each pair of engine runs, a seeded sample of conversations (view,
transcript, lead) and every counter hash (funnels and daily rollups of every
flow and site seen) must read back identical from the pipelined and the baseline
prefix. Independently of that comparison, each sampled view must hold its
conversation's last seq, and the funnels' ``started`` must add up to the
conversations generated.
"""

from __future__ import annotations

import random
from typing import Any

from bench.procstats import Json
from bench.projector.traffic import Summary
from projector.redis_store import RedisReadModel
from projector.write_set import daily_flow_key, daily_site_key, funnel_key, utc_day

DAY = 86_400.0


def counter_keys(summary: Summary) -> list[str]:
    days: set[str] = set()
    at = summary.first_at
    while at <= summary.last_at + DAY:
        days.add(utc_day(at))
        at += DAY
    keys = {funnel_key(flow, version) for flow, version in summary.funnels}
    for day in days:
        keys.update(daily_flow_key(flow, day) for flow in summary.flows)
        keys.update(daily_site_key(site, day) for site in summary.sites)
    return sorted(keys)


def sample_ids(summary: Summary, k: int, seed: int) -> list[str]:
    ids = summary.conversations
    return sorted(random.Random(seed).sample(ids, min(k, len(ids))))


async def read_back(store: RedisReadModel, cids: list[str], keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"conversations": {}, "transcripts": {}, "leads": {}, "counters": {}}
    for cid in cids:
        out["conversations"][cid] = await store.conversation(cid)
        out["transcripts"][cid] = await store.transcript(cid, 0, 100_000)
        out["leads"][cid] = await store.lead(cid)
    for key in keys:
        out["counters"][key] = await store.counters(key)
    return out


def absolute_problems(read: dict[str, Any], summary: Summary) -> list[str]:
    """What one store holds that contradicts the log itself."""
    problems: list[str] = []
    for cid, view in read["conversations"].items():
        if view is None:
            problems.append(f"{cid}: missing")
        elif view.last_seq != summary.last_seq[cid]:
            problems.append(f"{cid}: last_seq {view.last_seq} != {summary.last_seq[cid]}")
    started = sum(
        fields.get("started", 0)
        for key, fields in read["counters"].items()
        if key.startswith("funnel:")
    )
    if started != len(summary.conversations):
        problems.append(f"funnels count {started} started, the log {len(summary.conversations)}")
    return problems


def differences(a: dict[str, Any], b: dict[str, Any], limit: int = 10) -> list[str]:
    out: list[str] = []
    for part in ("conversations", "transcripts", "leads", "counters"):
        for key in sorted(set(a[part]) | set(b[part])):
            if a[part].get(key) != b[part].get(key):
                out.append(f"{part}[{key}]")
    return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])


async def compare(
    pipelined: RedisReadModel,
    baseline: RedisReadModel | None,
    summary: Summary,
    sample: int,
    seed: int,
) -> Json:
    cids = sample_ids(summary, sample, seed)
    keys = counter_keys(summary)
    first = await read_back(pipelined, cids, keys)
    out: Json = {
        "sampled_conversations": len(cids),
        "counter_keys": len(keys),
        "counter_fields": sum(len(f) for f in first["counters"].values()),
        "pipelined_problems": absolute_problems(first, summary),
    }
    if baseline is not None:
        second = await read_back(baseline, cids, keys)
        out["baseline_problems"] = absolute_problems(second, summary)
        out["differences"] = differences(first, second)
    ok = not out["pipelined_problems"] and not out.get("baseline_problems")
    out["identical"] = None if baseline is None else not out["differences"]
    out["ok"] = ok and out["identical"] is not False
    return out
