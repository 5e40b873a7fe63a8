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


def wait_first_exit(services: list[Service], timeout: float) -> tuple[Service, int]:
    """The first of ``services`` to exit, and its exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            assert service.proc is not None
            code = service.proc.poll()
            if code is not None:
                return service, code
        time.sleep(0.1)
    logs = "\n".join(s.log_text()[-2000:] for s in services)
    raise AssertionError(f"no processor exited:\n{logs}")


def stall_seconds(service: Service, seconds: int) -> Service:
    service.env["LEADFLOW_PROCESSOR_STALL_SECONDS"] = str(seconds)
    service.restart_on_stall = False  # this test watches the exit itself
    return service


async def test_a_worker_left_without_partitions_exits_with_the_stall_code(
    cluster: Cluster,
) -> None:
    """Two processors, one partition: the group gives it to one of them (which one
    is the assignor's choice, and a rebalance may move it), the other is left
    without partitions, and that one exits with the stall code."""
    first = stall_seconds(cluster.processor("first"), 8).start()
    first.wait_log("Worker ready")
    second = stall_seconds(cluster.processor("second"), 8).start()
    gateway = cluster.gateway(0).start().wait_ready()
    idle, code = wait_first_exit([first, second], 90)
    assert code == STALL_EXIT_CODE
    assert "out of service for" in idle.log_text()
    serving = second if idle is first else first
    assert serving.proc is not None and serving.proc.poll() is None  # the other one serves on
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        await visitor.start("solar-quote")
        assert visitor.messages, "no bot message after the idle worker left"
    finally:
        await visitor.close()
