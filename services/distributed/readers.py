"""Consumers that read a topic without taking part in it: analysts' exports,
rebuilds and verification. No group, no commits, committed records only, so
the live consumers' groups and offsets are never touched."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from services.distributed.settings import KafkaSettings

MIB = 1024 * 1024


def manual_consumer(
    settings: KafkaSettings, max_partition_fetch_bytes: int = 8 * MIB
) -> AIOKafkaConsumer:
    """A consumer for ``assign``: no group id, no auto-commit, ``read_committed``.

    ``max_partition_fetch_bytes`` must exceed the largest record it will meet
    (the verifier reads 8 MiB policy snapshots, so it asks for 16 MiB)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=max_partition_fetch_bytes,
        fetch_max_bytes=64 * MIB,
    )
