"""The benchmark's event logs: generated once with the real decider, cached as JSONL.

:func:`tests.support.traffic.simulate` plays ``chunk`` visitors at a time (about
4,200 events per 300 conversations); each chunk has its own seed and id prefix,
and every ``interleave`` consecutive chunks are merged by event time into one
stretch of the log, so about ``chunk x interleave`` conversations are in flight
at once. A command's events stay contiguous (the merge is stable and they
share their time). The log is cut at exactly ``n`` events.

The cache file (``~/.cache/leadflow/bench/``, one orjson event per line) is
keyed by everything that shapes the log, so a rerun reads it instead of
simulating again.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas.batches import BATCH_TYPE, BATCH_VERSION, decode_batch
from schemas.events import EVENTS, Event
from tests.support.traffic import simulate

FORMAT = 1  # bump when the generation changes: old cache files are then ignored


@dataclass(frozen=True, slots=True)
class LogSpec:
    n: int
    seed: int
    chunk: int
    interleave: int

    def path(self, cache_dir: Path) -> Path:
        name = f"projector-n{self.n}-seed{self.seed}-c{self.chunk}-i{self.interleave}-v{FORMAT}"
        return cache_dir / f"{name}.jsonl"


@dataclass
class Summary:
    """What a log holds, for the checks: conversations, funnels, expected last seqs."""

    events: int = 0
    conversations: list[str] = field(default_factory=list)
    funnels: set[tuple[str, int]] = field(default_factory=set)
    flows: set[str] = field(default_factory=set)
    sites: set[str] = field(default_factory=set)
    first_at: float = float("inf")
    last_at: float = float("-inf")
    last_seq: dict[str, int] = field(default_factory=dict)

    def add(self, raw: dict[str, Any]) -> None:
        self.events += 1
        cid = raw["conversation_id"]
        if raw["type"] == "ConversationStarted":
            self.conversations.append(cid)
            self.funnels.add((raw["flow_id"], raw["flow_version"]))
            self.flows.add(raw["flow_id"])
            self.sites.add(raw["site_id"])
        at = raw["at"]
        self.first_at = min(self.first_at, at)
        self.last_at = max(self.last_at, at)
        if raw["seq"] > self.last_seq.get(cid, 0):
            self.last_seq[cid] = raw["seq"]


def _chunk_events(spec: LogSpec, index: int) -> list[Event]:
    seed = spec.seed * 1_000_003 + index
    traffic = asyncio.run(simulate(spec.chunk, seed=seed, prefix=f"s{spec.seed}k{index:05d}-"))
    return traffic.events


def _generate(spec: LogSpec) -> Iterator[Event]:
    index = 0
    while True:
        chunks = [_chunk_events(spec, index + i) for i in range(spec.interleave)]
        index += spec.interleave
        yield from heapq.merge(*chunks, key=lambda e: e.at)


def ensure_log(spec: LogSpec, cache_dir: Path) -> tuple[Path, bool]:
    """The cached log's path (generated first if missing) and whether it was cached."""
    path = spec.path(cache_dir)
    if path.exists():
        return path, True
    cache_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    print(f"generating {spec.n:,} events with the real decider into {path} ...", flush=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    written = 0
    with tmp.open("wb") as out:
        for event in _generate(spec):
            if written >= spec.n:
                break
            out.write(orjson.dumps(event) + b"\n")
            written += 1
    tmp.replace(path)
    print(f"  {written:,} events in {time.perf_counter() - began:.1f} s", flush=True)
    return path, False


def read_raw(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for line in lines:
            raw: dict[str, Any] = orjson.loads(line)
            yield raw


def load_events(path: Path) -> tuple[list[Event], Summary]:
    summary = Summary()
    events: list[Event] = []
    for raw in read_raw(path):
        summary.add(raw)
        event: Event = EVENTS.decode_obj(raw)
        events.append(event)
    return events, summary


def _record(events: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    first = events[0]
    value = orjson.dumps(
        {
            "type": BATCH_TYPE,
            "v": BATCH_VERSION,
            "conversation_id": first["conversation_id"],
            "command_seq": first["command_seq"],
            "events": events,
        }
    )
    return first["conversation_id"].encode(), value


def load_records(path: Path) -> tuple[list[tuple[bytes, bytes]], Summary]:
    """The log as the processor writes it: one ``EventBatch`` record per command,
    keyed by conversation id (as ``command_records`` of the Kafka projector tests,
    built from the cached JSON without decoding every event)."""
    summary = Summary()
    records: list[tuple[bytes, bytes]] = []
    batch: list[dict[str, Any]] = []
    for raw in read_raw(path):
        summary.add(raw)
        if batch and (raw["conversation_id"], raw["command_seq"]) != (
            batch[0]["conversation_id"],
            batch[0]["command_seq"],
        ):
            records.append(_record(batch))
            batch = []
        batch.append(raw)
    if batch:
        records.append(_record(batch))
    for _, value in records[:: max(1, len(records) // 500)]:  # spot-check the encoding
        decoded = decode_batch(value)
        if len({e.conversation_id for e in decoded.events}) != 1:
            raise AssertionError("a record mixes conversations")
    return records, summary
