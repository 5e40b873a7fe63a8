"""``leadflow policy snapshot``: a flow's policy snapshot, written to a file.

``leadflow policy snapshot --flow ID --out FILE`` writes the flow's current
snapshot (or ``--version V``) as a file ``evaluate`` accepts: from the
``policy_snapshots`` archive in events.db (embedded) or the
``policy-snapshots`` topics (``--kafka``).

The two reads, :func:`sqlite_snapshot` and :func:`kafka_snapshot`, also give
``leadflow policy recommend`` (:mod:`app.cli_policy_control`) the flow's newest
snapshot. What they cannot use raises :class:`~app.cli_policy_errors.UsageError`,
which :func:`app.cli_policy.main` prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli_policy_errors import UsageError

if TYPE_CHECKING:
    from services.distributed.settings import KafkaSettings


def sqlite_snapshot(data_dir: Path, flow_id: str, version: str | None) -> bytes:
    """The newest archived snapshot of ``flow_id`` (or ``version``) in events.db."""
    path = data_dir / "events.db"
    if not path.exists():
        raise UsageError(f"no event log at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if version is None:
            query = (
                "SELECT body FROM policy_snapshots WHERE flow_id = ?"
                " ORDER BY flow_version DESC, created_at DESC LIMIT 1"
            )
            row = conn.execute(query, (flow_id,)).fetchone()
        else:
            query = "SELECT body FROM policy_snapshots WHERE flow_id = ? AND version = ?"
            row = conn.execute(query, (flow_id, version)).fetchone()
    except sqlite3.OperationalError as exc:
        raise UsageError(f"{path} has no snapshot archive ({exc})") from exc
    finally:
        conn.close()
    if row is None:
        what = f"snapshot {version}" if version else "snapshot"
        raise UsageError(f"no {what} of flow {flow_id!r} in {path}")
    from policy.archive import expand
    from policy.snapshot import SnapshotError

    try:
        return expand(bytes(row[0]))  # an update archived compactly: its snapshot's bytes
    except SnapshotError as exc:
        raise UsageError(f"the archived snapshot cannot be regenerated: {exc}") from exc


async def kafka_snapshot(settings: KafkaSettings, flow_id: str, version: str | None) -> bytes:
    """The flow's newest usable snapshot in the live topic, or ``version`` from the
    archive topic: both read from the start to their end, without a group (a manual
    :class:`~services.distributed.kafka_follower.KafkaLogFollower`, ``read_committed``)."""
    import contextlib

    from policy.archive import expand
    from policy.snapshot import SnapshotError, decode_snapshot
    from services.distributed.kafka_follower import KafkaLogFollower
    from services.distributed.topics import (
        SNAPSHOT_MAX_BYTES,
        archive_key,
        snapshot_archive_topic,
        snapshots_topic,
    )
    from services.log_follower import bounded_range, read_bounded

    topic = snapshot_archive_topic(settings) if version else snapshots_topic(settings)
    wanted = archive_key(flow_id, version) if version else flow_id.encode()
    follower = KafkaLogFollower(
        settings,
        topic,
        partitions=[0],  # both topics have one partition
        max_partition_fetch_bytes=2 * SNAPSHOT_MAX_BYTES,
    )
    best: tuple[tuple[int, float], bytes] | None = None
    try:
        await follower.start()
        start, end = await bounded_range(follower)
        chunks = read_bounded(follower, start, end)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                for record in chunk.records:
                    if record.key != wanted or record.value is None:
                        continue
                    try:
                        value = expand(record.value)  # an archived update may be compact
                        snap = decode_snapshot(value)
                    except SnapshotError:
                        continue  # as the processors do: an unusable record is skipped
                    rank = (snap.flow_version, snap.created_at)
                    if best is None or rank >= best[0]:
                        best = (rank, value)
    finally:
        await follower.stop()
    if best is None:
        what = f"snapshot {version}" if version else "usable snapshot"
        raise UsageError(f"no {what} of flow {flow_id!r} in {topic}")
    return best[1]


def run_snapshot(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from policy.snapshot import SnapshotError, decode_snapshot

    if args.kafka:
        from services.distributed.settings import KafkaSettings

        settings = KafkaSettings.from_env()
        try:
            body = asyncio.run(kafka_snapshot(settings, args.flow_id, args.version))
        except KafkaError as exc:
            raise UsageError(
                f"cannot read the snapshot topics at {settings.bootstrap}: {exc}"
            ) from exc
    else:
        body = sqlite_snapshot(Path(args.data_dir), args.flow_id, args.version)
    try:
        snapshot = decode_snapshot(body)
    except SnapshotError as exc:
        raise UsageError(f"the stored snapshot is not usable by this version: {exc}") from exc
    try:
        args.out.write_bytes(body)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror}") from exc
    print(
        f"wrote {args.out}: snapshot {snapshot.version} of flow {snapshot.flow_id}"
        f" version {snapshot.flow_version}, {len(snapshot.points)} decision points"
    )
    return 0
