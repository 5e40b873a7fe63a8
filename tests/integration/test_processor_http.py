"""The processor's /healthz, /readyz and /metrics (services/processor/http.py) on a real
worker: the kubelet's view of it, and the series Prometheus scrapes."""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Cluster, Service
from tests.support.visitor import Visitor


@pytest.fixture(scope="module")
def cluster(
    kafka_bootstrap: str, session_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    cluster = new_cluster(kafka_bootstrap, session_redis_url, tmp_path_factory.mktemp("http"))
    processor = cluster.processor().start()
    gateway = cluster.gateway(0).start()
    try:
        processor.wait_log("Worker ready")
        gateway.wait_ready()
        yield cluster
    finally:
        cluster.stop()


def get(service: Service, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.port}{path}", timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_status(service: Service, path: str, status: int, timeout: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, body = get(service, path)
            if code == status:
                return body
            last = (code, body)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{path} never answered {status}: {last}\n{service.log_text()[-2000:]}")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_ready_worker_reports_its_commands_lag_and_readiness(cluster: Cluster) -> None:
    processor = next(s for s in cluster.services if s.name == "processor")
    gateway = next(s for s in cluster.services if s.name.startswith("gateway"))
    assert get(processor, "/healthz")[0] == 200
    wait_status(processor, "/readyz", 200)
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        await visitor.start("solar-quote")
        await visitor.play_to_end(random.Random(1))
    finally:
        await visitor.close()
    status, body = get(processor, "/metrics")
    assert status == 200
    found = samples(body.decode())
    ok = ("leadflow_processor_commands_total", (("outcome", "ok"), ("type", "PressButton")))
    assert found[ok] >= 1
    started = (
        "leadflow_processor_commands_total",
        (("outcome", "ok"), ("type", "StartConversation")),
    )
    assert found[started] >= 1
    assert found[("leadflow_processor_decide_seconds_count", ())] >= 2
    assert found[("leadflow_processor_ready", ())] == 1
    lags = {k[1]: v for k, v in found.items() if k[0] == "leadflow_processor_lag_records"}
    assert lags and all(v >= 0 for v in lags.values()), lags
    assert {dict(labels)["partition"] for labels in lags} <= {
        str(p) for p in range(cluster.partitions)
    }
    assert found[("leadflow_processor_in_flight", ())] >= 0
    # labels are bounded: no conversation id anywhere in the exposition
    assert visitor.conversation_id not in body.decode()


def test_without_redis_the_worker_is_alive_but_not_ready(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Liveness never follows a dependency (an outage must restart nothing); readiness
    names the dependency that does not answer."""
    cluster = new_cluster(kafka_bootstrap, "redis://127.0.0.1:1/0", tmp_path)
    processor = cluster.processor().start()
    try:
        wait_status(processor, "/healthz", 200)
        processor.wait_log("Worker ready")
        body = wait_status(processor, "/readyz", 503)
        time.sleep(0.5)
        status, body = get(processor, "/readyz")
        assert status == 503
        assert orjson.loads(body)["failing"] == ["redis"]
        assert get(processor, "/healthz")[0] == 200
    finally:
        cluster.stop()
