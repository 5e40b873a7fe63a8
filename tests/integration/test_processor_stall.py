"""The stall watch on real processors: a worker out of service while Kafka answers
exits with the stall code, its supervisor starts a new one, nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.processor.stall import STALL_EXIT_CODE
from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Cluster, Service
from tests.support.visitor import Visitor


@pytest.fixture
def cluster(kafka_bootstrap: str, session_redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    cluster = new_cluster(kafka_bootstrap, session_redis_url, tmp_path)
    cluster.partitions = 1  # one partition for two workers: one of them has nothing
    yield cluster
    cluster.stop()


def wait_exit(service: Service, timeout: float) -> int:
    assert service.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = service.proc.poll()
        if code is not None:
            return code
        time.sleep(0.1)
    raise AssertionError(f"{service.name} did not exit:\n{service.log_text()[-3000:]}")


def stall_seconds(service: Service, seconds: int) -> Service:
    service.env["LEADFLOW_PROCESSOR_STALL_SECONDS"] = str(seconds)
    service.restart_on_stall = False  # this test watches the exit itself
    return service


async def test_a_worker_left_without_partitions_exits_with_the_stall_code(
    cluster: Cluster,
) -> None:
    serving = stall_seconds(cluster.processor("serving"), 8).start()
    serving.wait_log("Worker ready")
    idle = stall_seconds(cluster.processor("idle"), 8).start()
    gateway = cluster.gateway(0).start().wait_ready()
    assert wait_exit(idle, 90) == STALL_EXIT_CODE
    assert "out of service for" in idle.log_text()
    assert serving.proc is not None and serving.proc.poll() is None  # the other one serves on
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        await visitor.start("solar-quote")
        assert visitor.messages, "no bot message after the idle worker left"
    finally:
        await visitor.close()
