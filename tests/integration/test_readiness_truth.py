"""Readiness tells the truth about Kafka: a frozen broker (SIGSTOP: its port still
accepts TCP connections, nothing is answered) turns every service that needs it
unready, and they are ready again once it answers.

Regression: the processor's /readyz answered 200 while the broker was frozen (its
Kafka check was a TCP connect), and the projector's never looked at Kafka.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Service
from tests.support.kafka import LocalKafka


def status(service: Service) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/readyz", timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


async def until_all(services: list[Service], code: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        got = {s.name: await asyncio.to_thread(status, s) for s in services}
        if all(c == code for c in got.values()):
            return
        assert time.monotonic() < deadline, f"expected {code} from all: {got}"
        await asyncio.sleep(0.5)


async def test_a_frozen_broker_turns_every_kafka_service_unready_then_ready(
    session_redis_url: str, tmp_path: Path
) -> None:
    broker = LocalKafka(tmp_path / "broker").start()
    cluster = new_cluster(broker.bootstrap, session_redis_url, tmp_path / "cluster")
    try:
        services = [
            cluster.processor().start(),
            cluster.gateway(0).start(),
            cluster.projector().start(),
        ]
        for service in services:
            service.wait_ready(90)
        broker.signal(signal.SIGSTOP)
        try:
            await until_all(services, 503, 30)
        finally:
            broker.signal(signal.SIGCONT)
        await until_all(services, 200, 90)
    finally:
        cluster.stop()
        broker.stop()
