"""The broker and Redis a benchmark runs against: the ones named by the
environment (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``; nothing started, their
CPU not sampled), else fresh local ones (the Maven-jar broker of ``kafka.sh``,
Debian's ``redis-server``) in ``workdir``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.kafka import BOOTSTRAP_ENV, LocalKafka
from tests.support.redis_server import LocalRedis


def kafka_for_bench(workdir: Path, notes: list[str]) -> tuple[str, LocalKafka | None]:
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        notes.append(f"external Kafka {external}: its CPU is not sampled")
        return external, None
    print("starting the local Kafka broker (kafka.sh) ...", flush=True)
    broker = LocalKafka(workdir / "kafka").start()
    return broker.bootstrap, broker


def redis_for_bench(workdir: Path, notes: list[str]) -> tuple[str, LocalRedis | None]:
    external = os.environ.get("REDIS_URL", "").strip()
    if external:
        notes.append(f"external Redis {external}: its CPU is not sampled")
        return external, None
    redis = LocalRedis(workdir / "redis").start()
    return redis.url, redis
