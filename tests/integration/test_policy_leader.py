"""Two policy-service instances on a real broker (issue 16, item 6): one leads (fits and
publishes), the other stands by; kill -9 the leader and the standby publishes the next
update within a bounded time; no snapshot version is ever published with two different
bodies, and updates reach the archive in their compact form."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import orjson

from policy.archive import expand, is_compact
from policy.fit_versions import split_version
from policy.snapshot import decode_snapshot
from services.distributed.topics import snapshot_archive_topic, snapshots_topic
from tests.integration.test_policy_service import FAST_FITS, FLOW, http_text, wait_summary
from tests.support.distributed import Cluster, Service, read_topic
from tests.support.projection import produce
from tests.support.server import free_port
from tests.support.traffic import simulate

TAKEOVER_SECONDS = 45.0  # session timeout (10 s) + catch-up + a tick + slack on a busy box


def instance(cluster: Cluster, name: str) -> Service:
    port = free_port()
    service = Service(
        name,
        ["run", "policy"],
        {
            **cluster.env,
            **FAST_FITS,
            "LEADFLOW_POLICY_PORT": str(port),
            "LEADFLOW_POLICY_MIN_OUTCOMES": "20",
            "LEADFLOW_POLICY_REFIT_SECONDS": "3600",
            "LEADFLOW_POLICY_UPDATE_SECONDS": "1",
            "LEADFLOW_POLICY_IDLE_SECONDS": "600",  # as test_policy_service says why
            "LEADFLOW_POLICY_KILLED": "insurance-quote,saas-demo",
        },
        cluster.workdir / f"{name}.log",
        port,
    )
    cluster.services.append(service)
    return service


def readyz(service: Service) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/readyz", timeout=5) as r:
            body: dict[str, Any] = orjson.loads(r.read())
            return body
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return {}


def roles(services: list[Service], within: float = 30.0) -> dict[str, str]:
    """Each instance's role once exactly one of them leads."""
    deadline = time.monotonic() + within
    while True:
        now = {s.name: readyz(s).get("role", "?") for s in services}
        if list(now.values()).count("leader") == 1 or time.monotonic() > deadline:
            return now
        time.sleep(0.3)


async def published_versions(cluster: Cluster) -> dict[str, set[bytes]]:
    """Every version in the live topic and the archive, with the snapshot bodies
    (archived compact ones regenerated) published under it."""
    out: dict[str, set[bytes]] = {}
    for topic in (snapshots_topic(cluster.settings), snapshot_archive_topic(cluster.settings)):
        for _, _, value in await read_topic(cluster.bootstrap, topic, 1):
            body = expand(value)
            out.setdefault(decode_snapshot(body).version, set()).add(body)
    return out


def flow_versions(versions: dict[str, set[bytes]]) -> set[str]:
    return {v for v in versions if v.startswith(f"{FLOW}@")}


async def test_one_instance_publishes_and_the_standby_takes_over_after_kill9(
    cluster: Cluster,
) -> None:
    await produce(cluster, (await simulate(450, seed=61)).events)
    a = instance(cluster, "policy-a").start()
    a.wait_ready(timeout=60)
    b = instance(cluster, "policy-b").start()
    b.wait_ready(timeout=60)
    now = roles([a, b])
    assert sorted(now.values()) == ["leader", "standby"], now
    leader, standby = (a, b) if now["policy-a"] == "leader" else (b, a)

    # the fit's version; the learner's update of it may already be installed
    fitted = split_version(wait_summary(f"http://127.0.0.1:{leader.port}")["policy_version"])[0]
    await produce(cluster, (await simulate(60, seed=62, prefix="more")).events)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(v.startswith(f"{fitted}.") for v in await published_versions(cluster)):
            break
        await asyncio.sleep(0.3)
    status = wait_summary(f"http://127.0.0.1:{standby.port}")
    assert status["role"] == "standby"
    assert "policy fit published" in leader.log_text()
    assert "published" not in standby.log_text().replace("policy snapshots loaded", "")
    before = await published_versions(cluster)
    assert any(v.startswith(f"{fitted}.") for v in before), sorted(before)

    leader.kill9()
    killed_at = time.monotonic()
    await produce(cluster, (await simulate(60, seed=63, prefix="after")).events)
    new: set[str] = set()
    while time.monotonic() - killed_at < TAKEOVER_SECONDS:
        new = flow_versions(await published_versions(cluster)) - flow_versions(before)
        if new and readyz(standby).get("role") == "leader":
            break
        await asyncio.sleep(0.5)
    took = time.monotonic() - killed_at
    assert new, f"the standby published nothing within {TAKEOVER_SECONDS} s"
    assert readyz(standby)["role"] == "leader"
    assert "policy service leads" in standby.log_text()
    # the next update of the same fit, numbered after the dead leader's last one
    assert any(v.startswith(f"{fitted}.") for v in new), sorted(new)
    print(f"takeover: a new version {took:.1f} s after kill -9")

    versions = await published_versions(cluster)
    twice = {v: len(bodies) for v, bodies in versions.items() if len(bodies) > 1}
    assert twice == {}, twice  # no version with two different bodies
    archived = await read_topic(cluster.bootstrap, snapshot_archive_topic(cluster.settings), 1)
    compact = [value for _, _, value in archived if is_compact(value)]
    assert compact, "no update was archived in its compact form"
    metrics = http_text(f"http://127.0.0.1:{standby.port}/metrics")
    assert "leadflow_policy_leader 1.0" in metrics
