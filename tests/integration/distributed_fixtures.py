"""Session fixtures of the distributed tests: one real broker, one real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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
