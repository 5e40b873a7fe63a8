"""Integration fixtures: the real ``leadflow serve`` process and real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.visitor import Visitor


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One embedded server per test module (default limits)."""
    proc = ServerProcess(tmp_path_factory.mktemp("leadflow")).start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that kill or reconfigure it."""
    proc = ServerProcess(tmp_path / "data")
    yield proc
    proc.stop()


@pytest.fixture
async def visitor(server: ServerProcess) -> AsyncIterator[Visitor]:
    v = await Visitor.connect(server.ws_url)
    yield v
    await v.close()


from tests.integration.distributed_fixtures import (  # noqa: E402  (fixtures, re-exported)
    cluster,
    kafka_bootstrap,
    session_redis_url,
)

__all__ = ["cluster", "kafka_bootstrap", "session_redis_url"]
