"""Redis and Kafka for the benchmark, as ``bench.kafka.stack`` starts them.

``REDIS_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` if set (nothing started, their CPU
not sampled), else a fresh ``redis-server`` (``tests.support.redis_server``) and a
fresh local broker (``tests.support.kafka``, the jars of ``kafka.sh``) in a
temporary directory. Every key and topic of a run carries a fresh prefix; on an
external server they are deleted at the end.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from bench.infra import kafka_for_bench, redis_for_bench
from bench.kafka.stack import delete_topics
from tests.support.kafka import LocalKafka
from tests.support.redis_server import LocalRedis


@dataclass
class Services:
    workdir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    redis_url: str = ""
    bootstrap: str = ""
    redis: LocalRedis | None = None
    broker: LocalKafka | None = None
    notes: list[str] = field(default_factory=list)

    def redis_prefix(self, name: str) -> str:
        return f"bench-projector-{self.run_id}-{name}:"

    @property
    def topic_prefix(self) -> str:
        return f"bench-projector-{self.run_id}."

    def start_redis(self) -> None:
        self.redis_url, self.redis = redis_for_bench(self.workdir, self.notes)

    def start_kafka(self) -> None:
        self.bootstrap, self.broker = kafka_for_bench(self.workdir, self.notes)

    def redis_pid(self) -> int | None:
        return None if self.redis is None or self.redis.proc is None else self.redis.proc.pid

    def broker_pid(self) -> int | None:
        if self.broker is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int((self.broker.data_dir / "kafka.pid").read_text().strip())
        return None

    def client(self) -> Redis:
        return Redis.from_url(self.redis_url)

    async def drop_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (this run's own keys only)."""
        client = self.client()
        dropped = 0
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    dropped += await client.unlink(*batch)
                    batch = []
            if batch:
                dropped += await client.unlink(*batch)
        finally:
            await client.aclose()
        return dropped

    async def cleanup_external(self) -> None:
        """On external servers, remove what this run created."""
        if self.redis is None and self.redis_url:
            with contextlib.suppress(Exception):
                await self.drop_prefix(f"bench-projector-{self.run_id}-")
        if self.broker is None and self.bootstrap:
            with contextlib.suppress(Exception):
                await delete_topics(self.bootstrap, self.topic_prefix)

    def stop(self) -> None:
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.broker is not None:
            print("stopping the local Kafka broker ...", flush=True)
            with contextlib.suppress(Exception):
                self.broker.stop()
