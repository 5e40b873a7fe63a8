"""What a processor's bounded state cache costs (services/processor/state_cache.py).

    python -m bench.state_cache [--states 100000] [--capacity 10000] [--reads 20000]
                                [--tmp-root /tmp] [--out bench/results/state_cache.json]

Fills a partition's cache with ``--states`` conversations (8 steps each, the
size of the example flows' conversations: about 1.4 KB encoded), first without
a bound (what a processor held before) and then with ``--capacity`` in memory,
the rest spilled to a file. For each: the memory the states hold (tracemalloc,
after the fill), the time per write, per read of a state in memory and per
read of a spilled one, and the time to stream every state back (what the
timers do at recovery). Prints the JSON, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procstats import cpu_model
from schemas.commands import VisitorContext
from services.conversation.state import ConversationState, Step
from services.processor.state_cache import StateCache


def conversation(n: int) -> ConversationState:
    cid = f"{n:08x}-7d1c-4b55-9a0e-3c5d2f1b{n:04x}"[:36]
    steps = tuple(
        Step(seq=2 + 2 * i, node_id=f"question_{i}", command_seq=i + 1, answer=f"answer_{i}")
        for i in range(8)
    )
    context = VisitorContext(device="mobile", referrer="https://www.example.com/", locale="de")
    return ConversationState(
        cid,
        seq=18,
        last_command_seq=9,
        status="active",
        flow_id="solar-quote",
        flow_version=3,
        site_id="site-1",
        context=context,
        steps=steps,
        started_at=1.7e9 + n,
        updated_at=1.7e9 + n + 60,
        last_active_at=1.7e9 + n + 60,
    )


def per_op_us(keys: list[bytes], op: Callable[[bytes], object]) -> float:
    began = time.perf_counter()
    for key in keys:
        op(key)
    return (time.perf_counter() - began) / len(keys) * 1e6


def measure(states: int, capacity: int | None, reads: int, folder: Path) -> dict[str, Any]:
    rng = random.Random(7)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = [conversation(n) for n in range(states)]
    keys = [s.conversation_id.encode() for s in built]
    cache = StateCache(capacity, None if capacity is None else folder / "partition-0.sqlite")
    began = time.perf_counter()
    for key, state in zip(keys, built, strict=True):
        cache[key] = state
    write_us = (time.perf_counter() - began) / states * 1e6
    del built  # what remains is what the cache holds
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    hot = keys[-min(reads, cache.in_memory) :]
    cold = rng.sample(keys[: cache.spilled], min(reads, cache.spilled)) if cache.spilled else []
    began = time.perf_counter()
    streamed = sum(1 for _ in cache.states())
    out = {
        "capacity": capacity,
        "states": states,
        "in_memory": cache.in_memory,
        "spilled": cache.spilled,
        "memory_mb": round(held / 1e6, 1),
        "bytes_per_state_held": round(held / states),
        "spill_file_mb": round((folder / "partition-0.sqlite").stat().st_size / 1e6, 1)
        if cache.spilled
        else 0.0,
        "write_us": round(write_us, 2),
        "read_in_memory_us": round(per_op_us(hot, cache.__getitem__), 2),
        "read_spilled_us": round(per_op_us(cold, cache.__getitem__), 2) if cold else None,
        "stream_all_s": round(time.perf_counter() - began, 3),
        "streamed": streamed,
    }
    cache.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_cache")
    parser.add_argument("--states", type=int, default=100_000)
    parser.add_argument("--capacity", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--tmp-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/state_cache.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.tmp_root) as tmp:
        runs = [
            measure(args.states, None, args.reads, Path(tmp)),
            measure(args.states, args.capacity, args.reads, Path(tmp)),
        ]
    machine = {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    result = {"benchmark": "state_cache", "machine": machine, "runs": runs}
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print()
    print(
        "| capacity | in memory | spilled | memory MB | file MB | write µs | read hot µs"
        " | read spilled µs | stream all s |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        print(
            f"| {r['capacity'] or 'unbounded'} | {r['in_memory']:,} | {r['spilled']:,}"
            f" | {r['memory_mb']} | {r['spill_file_mb']} | {r['write_us']}"
            f" | {r['read_in_memory_us']} | {r['read_spilled_us'] or '-'} | {r['stream_all_s']} |"
        )
    unbounded, bounded = runs
    share = bounded["memory_mb"] / max(unbounded["memory_mb"], 0.1)
    print(f"\nmemory held: {bounded['memory_mb']} MB against {unbounded['memory_mb']} MB")
    print(f"({share:.0%}); a write is a new conversation's first, the worst case")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
