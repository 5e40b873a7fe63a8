"""``leadflow replay``: rebuild the read models from the log into a fresh namespace;
``leadflow replay --verify``: re-run the decider over the logged commands and check
that it reproduces the logged events bit for bit (:mod:`app.verify`).

Embedded (the default): the SQLite log in ``--data-dir``; it works while
``leadflow serve`` runs. ``--kafka``: the ``events`` topic into Redis, while
the live projectors keep running. Prints a progress bar on stderr and the
final counts on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from projector.rebuild_report import RebuildReport
from services.log_follower import UnreadableLog
from services.timerange import parse_since


class ProgressBar:
    """``[#####.....] 45%  450,000/1,000,000 records  52,000/s`` on a terminal,
    a plain line every 10% otherwise (logs, CI)."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        width: int = 30,
        label: str = "replay",
        unit: str = "records",
    ) -> None:
        self._stream = stream
        self._label = label
        self._unit = unit
        self._width = width
        self._started = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        share = 1.0 if total <= 0 else min(1.0, done / total)
        elapsed = max(1e-9, time.perf_counter() - self._started)
        line = f"{share:4.0%}  {done:,}/{total:,} {self._unit}  {done / elapsed:,.0f}/s"
        if self._tty:
            now = time.perf_counter()
            if now - self._last_draw < 0.1 and done < total:
                return
            self._last_draw = now
            filled = int(share * self._width)
            bar = "#" * filled + "." * (self._width - filled)
            self._stream.write(f"\r[{bar}] {line}")
            if done >= total:
                self._stream.write("\n")
        else:
            decile = int(share * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self._stream.write(f"{self._label}: {line}\n")
        self._stream.flush()


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay", help="rebuild the read models from the event log into a fresh namespace"
    )
    replay.add_argument(
        "--from",
        dest="since",
        type=parse_since,
        help="replay only conversations started at/after this time (unix seconds or ISO 8601)",
    )
    replay.add_argument(
        "--kafka",
        action="store_true",
        help="replay the Kafka events topic into Redis (settings from the environment)",
    )
    replay.add_argument("--data-dir", default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"))
    replay.add_argument(
        "--verify",
        action="store_true",
        help="re-run the decider over the logged commands and compare with the logged events"
        " (read-only; exit 1 on a divergence, 2 if the log cannot be read)",
    )
    replay.add_argument(
        "--max-divergences",
        type=int,
        default=10,
        help="--verify: report at most this many diverged conversations (default 10)",
    )
    replay.add_argument("--json", action="store_true", help="--verify: print the summary as JSON")
    replay.add_argument(
        "--flows",
        default=None,
        help="--verify: the flows the log was made with (LEADFLOW_FLOWS_DIR, else the examples)",
    )


async def _replay_sqlite(data_dir: Path, since: float | None) -> RebuildReport:
    from app.embedded import EVENTS_DB
    from projector.sqlite_rebuild import rebuild_sqlite
    from projector.sqlite_store import SqliteReadModel
    from services.embedded.sqlite_eventlog import SqliteEventLog

    log = SqliteEventLog(data_dir / EVENTS_DB)
    store = SqliteReadModel(data_dir / EVENTS_DB)
    log.start()
    store.start()
    try:
        return await rebuild_sqlite(log, store, since, ProgressBar())
    finally:
        store.close()
        log.close()


async def _replay_kafka(since: float | None) -> RebuildReport:
    from projector.kafka_replay import rebuild_from_kafka
    from projector.redis_store import RedisReadModel
    from services.distributed.redis_client import redis_client
    from services.distributed.settings import KafkaSettings, redis_url_from_env

    redis = redis_client(redis_url_from_env())
    try:
        store = RedisReadModel(redis, prefix=os.environ.get("LEADFLOW_REDIS_PREFIX", "leadflow:"))
        return await rebuild_from_kafka(KafkaSettings.from_env(), store, since, ProgressBar())
    finally:
        await redis.aclose()


def main(args: argparse.Namespace) -> int:
    if args.verify:
        from app.verify.cli import main as verify

        unit = "partitions" if args.kafka else "conversations"
        return verify(args, ProgressBar(label="verify", unit=unit))
    data_dir = Path(args.data_dir)
    if not args.kafka and not (data_dir / "events.db").exists():
        print(f"leadflow: no event log in {data_dir} (use --kafka for Kafka)", file=sys.stderr)
        return 2
    try:
        if args.kafka:
            report = asyncio.run(_replay_kafka(args.since))
        else:
            report = asyncio.run(_replay_sqlite(data_dir, args.since))
    except UnreadableLog as exc:
        print(
            f"leadflow replay: {exc} (nothing replaced: readers stay where they were)",
            file=sys.stderr,
        )
        return 2
    print(
        f"replayed {report.events:,} events in {report.seconds:.1f} s: "
        f"{report.conversations:,} conversations, {report.leads:,} leads; "
        f"readers now use namespace {report.namespace} (dropped {report.previous})"
    )
    return 0
