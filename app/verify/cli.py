"""``leadflow replay --verify [--kafka] [--from TIME] [--data-dir D]
[--max-divergences N] [--json]``: the shell around the verifier.

Read-only: the embedded mode opens events.db and keys.db ``mode=ro``; the Kafka
mode reads by manual assignment without a group. Progress on stderr, the summary
on stdout. Exit 0: identical; 1: divergences; 2: the log cannot be read (no log,
a record of an unknown schema version, no command secret).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.verify.model import Summary, Transcript, UnreadableLog
from app.verify.policies import LoadSnapshot, ReplayPolicies
from app.verify.report import summary_json, summary_text
from app.verify.runner import GetKey, verify_all
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

if TYPE_CHECKING:
    from services.distributed.settings import KafkaSettings

Progress = Callable[[int, int], None]


def flows_dir(raw: str | None) -> Path:
    return Path(raw or os.environ.get("LEADFLOW_FLOWS_DIR") or EXAMPLE_FLOWS_DIR)


async def _run(
    transcripts: AsyncIterable[Transcript],
    catalog: FlowCatalog,
    load: LoadSnapshot,
    get_key: GetKey,
    limit: int,
) -> Summary:
    return await verify_all(transcripts, catalog, ReplayPolicies(load), get_key, limit)


async def with_registry(catalog: FlowCatalog, events_db: Path) -> None:
    """Add every version of events.db's flow registry to ``catalog`` (the registry
    wins over a flow file of the same version): the versions conversations were
    pinned to, whether they came from files or the admin API. A log written before
    the registry existed has no such table; the flow files then are the catalog."""
    from services.embedded.sqlite_eventlog import registry_flow_ids
    from services.embedded.sqlite_follower import SqliteLogFollower
    from services.registry.feed import RegistryFeed

    if not registry_flow_ids(events_db):
        return
    await RegistryFeed(SqliteLogFollower(events_db, table="flow_registry"), catalog).load()


async def with_kafka_registry(catalog: FlowCatalog, settings: KafkaSettings) -> None:
    """Add every version of the ``{prefix}flows`` topic to ``catalog`` (the registry
    wins over a flow file of the same version), drafts of previews included."""
    from services.registry.feed import RegistryFeed
    from services.registry.kafka import registry_follower

    await RegistryFeed(registry_follower(settings), catalog).load()


async def _embedded(
    data_dir: Path, catalog: FlowCatalog, since: float | None, limit: int, progress: Progress
) -> Summary:
    from app.embedded import EVENTS_DB, KEYS_DB
    from app.verify.sqlite_source import SqliteKeys, SqliteLog

    await with_registry(catalog, data_dir / EVENTS_DB)
    log = SqliteLog(data_dir / EVENTS_DB)
    keys = SqliteKeys(data_dir / KEYS_DB)
    try:
        return await _run(log.transcripts(since, progress), catalog, log.snapshot, keys.get, limit)
    finally:
        keys.close()
        log.close()


async def _kafka(
    catalog: FlowCatalog, since: float | None, limit: int, progress: Progress
) -> Summary:
    from app.verify.kafka_source import KafkaLog, read_archive
    from services.distributed.command_sealing import command_sealer_from_env
    from services.distributed.redis_client import redis_client
    from services.distributed.redis_keystore import RedisKeyStore
    from services.distributed.settings import KafkaSettings, redis_url_from_env

    try:
        sealer = command_sealer_from_env(os.environ)
    except ValueError:
        raise UnreadableLog(
            "commands",
            "set LEADFLOW_COMMAND_SECRET (the processors' one, and any previous ones in"
            " LEADFLOW_COMMAND_SECRET_PREVIOUS) to open lead fields",
        ) from None
    settings = KafkaSettings.from_env()
    await with_kafka_registry(catalog, settings)
    log = KafkaLog(settings, sealer)
    archive = await read_archive(settings)
    redis = redis_client(redis_url_from_env())
    try:
        keys = RedisKeyStore(redis, prefix=os.environ.get("LEADFLOW_REDIS_PREFIX", "leadflow:"))
        summary = await _run(
            log.transcripts(since, progress), catalog, archive.get, keys.get, limit
        )
    finally:
        await redis.aclose()
    summary.skipped_commands = log.skipped_commands
    return summary


def _infrastructure_errors() -> tuple[type[Exception], ...]:
    """Kafka and Redis failures (unreachable, refused): a clear line, not a traceback."""
    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    return (KafkaError, RedisError)


def main(args: argparse.Namespace, progress: Progress) -> int:
    data_dir = Path(args.data_dir)
    if not args.kafka and not (data_dir / "events.db").exists():
        print(f"leadflow: no event log in {data_dir} (use --kafka for Kafka)", file=sys.stderr)
        return 2
    catalog = FlowCatalog.from_directory(flows_dir(args.flows))
    limit = args.max_divergences
    failures: tuple[type[Exception], ...] = (OSError, sqlite3.Error, *_infrastructure_errors())
    try:
        if args.kafka:
            summary = asyncio.run(_kafka(catalog, args.since, limit, progress))
        else:
            summary = asyncio.run(_embedded(data_dir, catalog, args.since, limit, progress))
    except UnreadableLog as exc:
        print(f"leadflow: cannot verify the log: {exc}", file=sys.stderr)
        return 2
    except failures as exc:
        print(f"leadflow: cannot verify the log: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary_json(summary), indent=2))
    else:
        print(summary_text(summary))
    return 0 if summary.identical else 1
