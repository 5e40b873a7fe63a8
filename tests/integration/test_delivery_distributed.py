"""Lead delivery in the distributed mode: real Kafka, Redis, gateway, processor
and two ``leadflow run delivery`` workers sharing the partitions and the due
deliveries; a worker and the receiver are killed mid-burst."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from schemas.batches import decode_batch
from schemas.events import LeadCaptured
from tests.support.delivery_rig import (
    SECRET,
    api_key,
    leave_lead,
    payloads,
    webhook,
    write_config,
)
from tests.support.distributed import Cluster, read_topic
from tests.support.http import get_json
from tests.support.receiver_process import ReceiverProcess
from tests.support.server import ROOT, free_port

FAST = {
    "LEADFLOW_DELIVERY_RETRY_STEPS": "0.2,0.5,1",
    "LEADFLOW_DELIVERY_TIMEOUT_SECONDS": "2",
    "LEADFLOW_DELIVERY_CIRCUIT_OPEN_SECONDS": "0.5",
}


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


def _delivered(port: int | None) -> int:
    """What the projector's read API says of the site's deliveries (its key only)."""
    status, body = get_json(
        f"http://127.0.0.1:{port}/api/v1/sites/acme/deliveries?status=delivered&limit=500",
        key=api_key("acme"),
    )
    assert status == 200, body
    assert "@example.com" not in str(body)  # no contact details
    counted: int = body["summary"]["counts"]["delivered"]
    assert counted == len(body["deliveries"])
    return counted


async def leads_in_log(cluster: Cluster) -> set[str]:
    records = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
    return {
        e.id
        for _, _, value in records
        for e in decode_batch(value).events
        if isinstance(e, LeadCaptured)
    }


async def test_two_workers_deliver_every_lead_once_per_id_through_kill_9s(
    cluster: Cluster, tmp_path: Path
) -> None:
    receiver = ReceiverProcess(free_port(), SECRET, tmp_path / "received.jsonl").start()
    try:
        env = {**write_config(tmp_path, {"acme": [webhook("crm", f"{receiver.url}/hook")]}), **FAST}
        processor = cluster.processor()
        processor.env.update(env)
        gateway = cluster.gateway(0)
        gateway.env.update(env)
        first = cluster.delivery("delivery-a", env)
        second = cluster.delivery("delivery-b", env)
        for service in (processor, gateway, first, second):
            service.start()
        processor.wait_log("Worker ready")
        gateway.wait_ready()
        first.wait_ready()
        second.wait_ready()

        async def burst(start: int, count: int) -> list[str]:
            done = await asyncio.gather(
                *(leave_lead(gateway.ws_url, "acme", n) for n in range(start, start + count)),
                return_exceptions=True,
            )
            return [c for c in done if isinstance(c, str)]

        cids = await burst(0, 30)
        first.kill9()  # mid-burst: deliveries in flight, claims held
        cids += await burst(30, 30)
        receiver.kill9()  # the receiver dies too, requests in flight
        cids += await burst(60, 20)
        await asyncio.sleep(1.0)
        receiver.start()
        first.start()
        expected = await leads_in_log(cluster)
        assert len(expected) == len(cids)

        def distinct() -> int:
            return len(receiver.received()[0])

        # a claim held by the killed worker waits out its lease (2 x timeout + 5 s)
        await until(lambda: distinct() >= len(expected), 90, "every lead")
        bodies, bad = receiver.received()
        got = payloads(bodies)  # raises if one webhook-id had two different bodies
        assert set(got) == expected  # webhook-id is the lead's event id: one per lead
        assert {p["data"]["conversation_id"] for p in got.values()} == set(cids)
        assert bad == 0
        projector = cluster.projector()
        projector.env.update(env)
        projector.start().wait_ready()
        await until(lambda: _delivered(projector.port) == len(expected), 30, "the read API")
    finally:
        receiver.stop()


def test_leadflow_run_delivery_refuses_a_bad_destination_before_connecting(
    tmp_path: Path,
) -> None:
    """Nothing listens at the Kafka or Redis addresses: the check comes first."""
    env = write_config(tmp_path, {"acme": [webhook("crm", "https://crm.example/hook")]})
    env.pop("HOOK_SECRETS")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "delivery"],
        cwd=ROOT,
        env={
            **os.environ,
            **env,
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "LEADFLOW_REDIS_URL": "redis://127.0.0.1:1/0",
            "HOOK_SECRETS": "",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "site 'acme', destination 'crm'" in done.stderr
    assert "HOOK_SECRETS" in done.stderr and "Traceback" not in done.stderr
