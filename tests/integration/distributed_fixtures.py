"""Session fixtures of the distributed tests: one real broker, one real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.distributed.topics import ensure_topics
from tests.support.distributed import Cluster
from tests.support.kafka import kafka_bootstrap_for_session
from tests.support.redis_server import redis_url_for_session


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bootstrap, cleanup = kafka_bootstrap_for_session(tmp_path_factory.mktemp("kafka"))
    yield bootstrap
    cleanup()


@pytest.fixture(scope="session")
def session_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, cleanup = redis_url_for_session(tmp_path_factory.mktemp("redis-session"))
    yield url
    cleanup()


def new_cluster(bootstrap: str, redis_url: str, workdir: Path) -> Cluster:
    """A cluster on topics of its own (a fresh prefix), so tests never share state."""
    return Cluster(bootstrap, redis_url, workdir, prefix=f"t{uuid.uuid4().hex[:8]}.")


@pytest.fixture
def cluster(kafka_bootstrap: str, session_redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of the session's broker and Redis on topics of its own, created up
    front (as every ``leadflow run`` does at its start); its services stop after the test."""
    cluster = new_cluster(kafka_bootstrap, session_redis_url, tmp_path)
    asyncio.run(ensure_topics(cluster.settings))
    yield cluster
    cluster.stop()
