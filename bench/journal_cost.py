"""The command journal's cost per append: SqliteEventLog.append with and without the
command. First the CPU the writer's transactions spend per append (one append per
transaction, and 200: the serialized part, stable on a shared machine), then the
wall time of appends through the adapter, one at a time and 200 in flight (group
commit; noisy when other processes share the cores).

    python -m bench.journal_cost [--appends 4000] [--rounds 3] [--tmp-root /tmp]

Each append is a press at a decision point: ButtonPressed, EdgeChosen, NodeEntered
(the common case). Rounds alternate the two variants in fresh files; the median of
the rounds is printed (microseconds per append) with the relative difference.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from projector.sqlite_projection import project_in_transaction
from projector.sqlite_schema import SCHEMA as READ_MODEL_SCHEMA
from schemas.commands import PressButton, StartConversation, VisitorContext
from schemas.events import (
    ButtonPressed,
    ConversationStarted,
    EdgeChosen,
    Event,
    NodeEntered,
    event_id,
)
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_worker import connect


def _batch(cid: str, seq: int, at: float) -> tuple[list[Event], PressButton]:
    events: list[Event] = [
        ButtonPressed(
            conversation_id=cid,
            at=at,
            command_seq=seq,
            seq=3 * seq - 1,
            id=event_id(cid, 3 * seq - 1),
            node_id="property",
            button_id="house",
        ),
        EdgeChosen(
            conversation_id=cid,
            at=at,
            command_seq=seq,
            seq=3 * seq,
            id=event_id(cid, 3 * seq),
            node_id="property",
            button_id="house",
            candidates=("roof", "bill"),
            chosen="roof",
            propensity=0.5,
            policy_version="uniform-v1",
            seed=1234567890123,
            features=("device=mobile", "source=search", "hour=morning", "language=en"),
        ),
        NodeEntered(
            conversation_id=cid,
            at=at,
            command_seq=seq,
            seq=3 * seq + 1,
            id=event_id(cid, 3 * seq + 1),
            node_id="roof",
            kind="question",
        ),
    ]
    command = PressButton(
        conversation_id=cid, seq=seq, at=at, node_id="property", button_id="house"
    )
    return events, command


def _start(cid: str) -> tuple[list[Event], StartConversation]:
    started = ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=event_id(cid, 1),
        at=1.0,
        command_seq=1,
        flow_id="solar-quote",
        flow_version=1,
        site_id="demo",
        context=VisitorContext(device="mobile"),
    )
    return [started], StartConversation(
        conversation_id=cid, seq=1, at=1.0, flow_id="solar-quote", site_id="demo"
    )


async def _run(path: Path, appends: int, journal: bool, concurrent: int) -> float:
    log = SqliteEventLog(
        path, projection=project_in_transaction, projection_schema=READ_MODEL_SCHEMA
    )
    log.start()
    try:
        cids = [f"bench-{i:05d}" for i in range(concurrent)]
        for cid in cids:
            events, command = _start(cid)
            await log.append(events, command if journal else None)
        rounds = appends // concurrent
        began = time.perf_counter()
        for r in range(rounds):
            batches = [_batch(cid, r + 1, 2.0 + r) for cid in cids]
            await asyncio.gather(*(log.append(e, c if journal else None) for e, c in batches))
        return (time.perf_counter() - began) / (rounds * concurrent) * 1e6
    finally:
        log.close()


class _Capture:
    """Stands in for the adapter's writer thread: keeps each append's transaction job."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[sqlite3.Connection], object]] = []

    async def write(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        self.jobs.append(fn)


def _writer_cpu(path: Path, appends: int, journal: bool, group: int) -> float:
    """CPU microseconds per append spent in the writer's transactions (the serialized
    part at saturation), measured without threads: the jobs ``append`` queues are run
    in transactions of ``group`` appends, as the writer thread groups them."""
    log = SqliteEventLog(
        path, projection=project_in_transaction, projection_schema=READ_MODEL_SCHEMA
    )
    capture = _Capture()
    log._writer = capture  # type: ignore[assignment]
    cids = [f"bench-{i:05d}" for i in range(group)]

    async def queue() -> None:
        for cid in cids:
            events, command = _start(cid)
            await log.append(events, command if journal else None)
        for r in range(appends // group):
            for cid in cids:
                events, press = _batch(cid, r + 1, 2.0 + r)
                await log.append(events, press if journal else None)

    asyncio.run(queue())
    conn = connect(path)
    conn.executescript(log.schema)
    jobs = capture.jobs
    began = 0.0
    for start in range(0, len(jobs), group):
        if start == group:  # the starts are set-up, not measured
            began = time.process_time()
        conn.execute("BEGIN IMMEDIATE")
        for fn in jobs[start : start + group]:
            conn.execute("SAVEPOINT job")
            fn(conn)
            conn.execute("RELEASE job")
        conn.execute("COMMIT")
    spent = time.process_time() - began
    conn.close()
    return spent / (len(jobs) - group) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp-root", default=None)
    parser.add_argument("--cpu-only", action="store_true", help="only the writer CPU part")
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)  # as leadflow serve sets it (app/embedded.py)
    for group in (1, 200):
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for journal in (False, True) if r % 2 == 0 else (True, False):
                with tempfile.TemporaryDirectory(dir=args.tmp_root) as tmp:
                    cpu[journal].append(
                        _writer_cpu(Path(tmp) / "events.db", args.appends, journal, group)
                    )
        without, with_ = statistics.median(cpu[False]), statistics.median(cpu[True])
        print(
            f"writer CPU, {group:>3} appends per transaction: without journal {without:6.1f}"
            f" us/append, with {with_:6.1f} us/append ({(with_ - without) / without:+.1%})"
        )
    for concurrent in () if args.cpu_only else (1, 200):
        results: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for journal in (False, True) if r % 2 == 0 else (True, False):
                with tempfile.TemporaryDirectory(dir=args.tmp_root) as tmp:
                    results[journal].append(
                        asyncio.run(
                            _run(Path(tmp) / "events.db", args.appends, journal, concurrent)
                        )
                    )
        without, with_ = statistics.median(results[False]), statistics.median(results[True])
        print(
            f"{concurrent:>3} in flight: without journal {without:7.1f} us/append,"
            f" with {with_:7.1f} us/append ({(with_ - without) / without:+.1%})"
        )


if __name__ == "__main__":
    main()
