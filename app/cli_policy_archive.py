"""``leadflow policy archive``: the snapshot archive's size and its retention.

``leadflow policy archive stats`` counts the archived snapshots of each flow
and their bytes, fits and updates apart, compact and full apart.

``leadflow policy archive prune --older-than 30d`` deletes the archived
snapshots created before that age that are not fits: every fit (a version
without a revision: ``{flow}@{version}#{time}Z``, also the kill switch's
uniform snapshot) is kept for ever; updates (``...Z.{n}``, the online
learner's posterior), the fallbacks of refused fits (``...Z.online.{n}``) and
guardrail republications (``...~g...``) are deleted. Embedded: rows of
events.db's ``policy_snapshots`` (``--data-dir``). Distributed (``--kafka``):
tombstones for their keys in the compacted ``policy-snapshot-archive`` topic
(compaction then drops them). ``--dry-run`` only counts.

The caveat: ``leadflow replay --verify`` replays a decision with the
snapshot it names; a decision made under a pruned update is then reported as
"not archived" (unverifiable), not as a divergence. Verifying decisions older
than the retention needs a copy of the archive taken before the prune.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from policy.archive import is_compact
from policy.fit_versions import split_version

if TYPE_CHECKING:
    from services.distributed.settings import KafkaSettings

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ArchiveUsageError(Exception):
    """Input the command cannot use; the message says why."""


def parse_age(text: str) -> float:
    """Seconds of ``30d``, ``12h``, ``90m``, ``45s`` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise ArchiveUsageError(f"--older-than must look like 30d, 12h, 90m or 45s, got {text!r}")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def is_fit(version: str) -> bool:
    """A fit's version (kept for ever): no revision and no guardrail suffix."""
    return split_version(version)[1] is None and "~" not in version


@dataclass
class Stats:
    """Archived snapshots by kind (fit, update) and form (compact, full)."""

    count: dict[tuple[str, str], int] = field(default_factory=dict)
    size: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, version: str, body: bytes) -> None:
        key = ("fit" if is_fit(version) else "update", "compact" if is_compact(body) else "full")
        self.count[key] = self.count.get(key, 0) + 1
        self.size[key] = self.size.get(key, 0) + len(body)

    def lines(self) -> list[str]:
        out = []
        for key in sorted(self.count):
            n, size = self.count[key], self.size[key]
            out.append(
                f"{key[0]:6} {key[1]:7} {n:8d} snapshots {size:12d} bytes {size // n:8d} each"
            )
        return out or ["the archive is empty"]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    archive = commands.add_parser(
        "archive",
        help="the snapshot archive: its size (stats), its retention (prune)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = archive.add_subparsers(dest="archive_command", required=True)
    stats = actions.add_parser("stats", help="archived snapshots and bytes, by kind and form")
    prune = actions.add_parser("prune", help="delete archived updates older than an age")
    prune.add_argument("--older-than", required=True, type=str, help="e.g. 30d, 12h")
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    for command in (stats, prune):
        command.add_argument(
            "--data-dir",
            default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"),
            help="embedded mode: the data directory holding events.db (default: %(default)s)",
        )
        command.add_argument("--kafka", action="store_true", help="the Kafka archive topic")


# ---- embedded ------------------------------------------------------------------------------


def _connect(data_dir: Path, write: bool) -> sqlite3.Connection:
    path = data_dir / "events.db"
    if not path.exists():
        raise ArchiveUsageError(f"no event log at {path}")
    uri = f"file:{path}" if write else f"file:{path}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")  # leadflow serve may be writing
    return conn


def sqlite_stats(data_dir: Path) -> Stats:
    stats = Stats()
    conn = _connect(data_dir, write=False)
    try:
        for version, body in conn.execute("SELECT version, body FROM policy_snapshots"):
            stats.add(version, bytes(body))
    except sqlite3.OperationalError as exc:
        raise ArchiveUsageError(f"no snapshot archive in {data_dir} ({exc})") from exc
    finally:
        conn.close()
    return stats


def sqlite_prune(data_dir: Path, before: float, dry_run: bool = False) -> tuple[int, int]:
    """(snapshots, bytes) deleted (or that would be, ``dry_run``)."""
    conn = _connect(data_dir, write=not dry_run)
    try:
        rows = conn.execute(
            "SELECT version, length(body) FROM policy_snapshots WHERE created_at < ?", (before,)
        ).fetchall()
        doomed = [(v, n) for v, n in rows if not is_fit(v)]
        if not dry_run and doomed:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "DELETE FROM policy_snapshots WHERE version = ?", [(v,) for v, _ in doomed]
                )
    except sqlite3.OperationalError as exc:
        raise ArchiveUsageError(f"no snapshot archive in {data_dir} ({exc})") from exc
    finally:
        conn.close()
    return len(doomed), sum(n for _, n in doomed)


# ---- Kafka ---------------------------------------------------------------------------------


async def _archive_records(settings: KafkaSettings) -> list[tuple[bytes, int, bytes | None]]:
    """(key, timestamp in ms, value) of every archive record up to its end now."""
    from services.distributed.kafka_follower import MIB, KafkaLogFollower
    from services.distributed.topics import snapshot_archive_topic
    from services.log_follower import bounded_range, read_bounded

    follower = KafkaLogFollower(
        settings,
        snapshot_archive_topic(settings),
        partitions=[0],
        max_partition_fetch_bytes=16 * MIB,
    )
    out: list[tuple[bytes, int, bytes | None]] = []
    await follower.start()
    try:
        start, end = await bounded_range(follower)
        async for chunk in read_bounded(follower, start, end):
            out.extend((r.key or b"", int(r.timestamp * 1000), r.value) for r in chunk.records)
    finally:
        await follower.stop()
    return out


def _live(records: list[tuple[bytes, int, bytes | None]]) -> dict[bytes, tuple[int, bytes]]:
    """The newest record of each key that is not a tombstone."""
    newest: dict[bytes, tuple[int, bytes | None]] = {}
    for key, at, value in records:
        newest[key] = (at, value)
    return {k: (at, v) for k, (at, v) in newest.items() if v is not None}


async def kafka_stats(settings: KafkaSettings) -> Stats:
    stats = Stats()
    for key, (_, body) in _live(await _archive_records(settings)).items():
        stats.add(key.decode(errors="replace").partition("/")[2], body)
    return stats


async def kafka_prune(
    settings: KafkaSettings, before: float, dry_run: bool = False
) -> tuple[int, int]:
    """Tombstones for the archive keys of updates published before ``before``."""
    from aiokafka import AIOKafkaProducer

    from services.distributed.topics import snapshot_archive_topic

    live = _live(await _archive_records(settings))
    doomed = [
        (key, len(body))
        for key, (at, body) in live.items()
        if at / 1000.0 < before and not is_fit(key.decode(errors="replace").partition("/")[2])
    ]
    if not dry_run and doomed:
        producer = AIOKafkaProducer(**settings.client_kwargs(), acks="all", enable_idempotence=True)
        await producer.start()
        try:
            topic = snapshot_archive_topic(settings)
            for key, _ in doomed:
                await producer.send(topic, key=key, value=None, partition=0)
            await producer.flush()
        finally:
            await producer.stop()
    return len(doomed), sum(n for _, n in doomed)


# ---- the commands --------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int | None:
    """The exit status of ``leadflow policy archive ...``; None for another command."""
    if args.policy_command != "archive":
        return None
    settings = None
    if args.kafka:
        from services.distributed.settings import KafkaSettings

        settings = KafkaSettings.from_env()
    if args.archive_command == "stats":
        stats = (
            asyncio.run(kafka_stats(settings))
            if settings is not None
            else sqlite_stats(Path(args.data_dir))
        )
        print("\n".join(stats.lines()))
        return 0
    before = time.time() - parse_age(args.older_than)
    count, size = (
        asyncio.run(kafka_prune(settings, before, args.dry_run))
        if settings is not None
        else sqlite_prune(Path(args.data_dir), before, args.dry_run)
    )
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {count} archived updates ({size} bytes) created before "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(before))}; every fit is kept"
    )
    return 0
