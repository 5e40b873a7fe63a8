"""Two regions and one analytics cluster, mirrored by Kafka MirrorMaker 2 (real brokers,
real processes; docs/runbook.md, "Regions").

Three local brokers: regions ``eu`` and ``us`` each run a full conversation stack
(processor and gateway, ``LEADFLOW_REGION`` set, same topic prefix, a Redis database of
their own); ``analytics`` runs the read side (a projector with the flow admin API). One
dedicated MirrorMaker copies each region's ``events`` and ``commands`` into the analytics
cluster's topics of the same names (same partition), and the analytics cluster's ``flows``
and policy topics into every region. A policy snapshot published on the analytics side
(as its policy service publishes: archive and snapshot in one transaction) is installed by
both regions' processors, whose visitors then play with it; the analytics side sees every
conversation of both regions: the records, ``leadflow replay --verify --kafka`` (which
replays the regions' decisions with the analytics side's archive), ``leadflow export
--kafka`` and the projector's funnel. A flow published on the analytics side reaches new
visitors of both regions. An aborted transaction in a region is not copied (the mirror
reads ``read_committed``), and a mirror killed with ``kill -9`` while visitors play, then
restarted, copies nothing twice (exactly once: ``python -m bench.mirror.crash`` shows
what at least once would copy twice).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiokafka import AIOKafkaProducer

from policy.snapshots_kafka import SnapshotPublisher
from schemas.batches import decode_batch
from schemas.events import EdgeChosen
from services.catalog import EXAMPLE_FLOWS_DIR
from services.distributed.topics import ensure_topics
from services.http_auth import hash_api_key
from tests.integration.test_flow_registry_distributed import seconds_until
from tests.integration.test_flow_registry_embedded import (
    ADMIN,
    ADMIN_KEY,
    FLOW,
    NEW_GREETING,
    OLD_GREETING,
    call,
    sites_yaml,
    solar_v2_yaml,
)
from tests.support.distributed import Cluster, Service, read_topic
from tests.support.kafka import LocalKafka
from tests.support.mirror import MirrorMaker, region_flows
from tests.support.server import ROOT
from tests.support.verify_snapshots import latest, snapshot
from tests.support.visitor import Visitor

pytestmark = pytest.mark.integration

REGIONS = ("eu", "us")  # LEADFLOW_REGION and the mirror's cluster aliases
ANALYTICS = "analytics"
PREFIX = "lf."  # the same prefix everywhere: identity naming maps a topic onto itself
PARTITIONS = 4
VISITS = 3  # conversations played to the end in each region
MIRROR_SECONDS = 30.0  # bound on the mirror catching up (it takes well under a second)
PROBE = b"aborted-probe"

Records = Counter[tuple[int, bytes, bytes]]


@dataclass
class Deployment:
    brokers: dict[str, LocalKafka]
    clusters: dict[str, Cluster]
    gateways: dict[str, Service]
    projector: Service
    mirror: MirrorMaker

    def env(self, name: str) -> dict[str, str]:
        return {**os.environ, **self.clusters[name].env}


def redis_database(url: str, db: int) -> str:
    """``url`` on another database number: each region's Redis is its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _start_all(brokers: dict[str, LocalKafka]) -> None:
    with ThreadPoolExecutor(len(brokers)) as pool:
        for started in [pool.submit(b.start) for b in brokers.values()]:
            started.result()


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, session_redis_url: str
) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("regions")
    brokers = {name: LocalKafka(base / name) for name in (*REGIONS, ANALYTICS)}
    clusters: dict[str, Cluster] = {}
    mirror: MirrorMaker | None = None
    try:
        _start_all(brokers)
        for db, (name, broker) in enumerate(brokers.items(), start=1):
            clusters[name] = Cluster(
                broker.bootstrap,
                redis_database(session_redis_url, db),
                base / f"{name}-services",
                prefix=PREFIX,
                partitions=PARTITIONS,
            )
            # every cluster creates its topics itself (the mirror copies records only)
            asyncio.run(ensure_topics(clusters[name].settings))
        flows_dir = base / "flows"
        shutil.copytree(EXAMPLE_FLOWS_DIR, flows_dir)
        sites = base / "sites.yaml"
        sites.write_text(sites_yaml())
        config = {"LEADFLOW_FLOWS_DIR": str(flows_dir), "LEADFLOW_SITES_FILE": str(sites)}
        mirror = MirrorMaker(
            {name: b.bootstrap for name, b in brokers.items()},
            region_flows(REGIONS, ANALYTICS, PREFIX),
            base / "mirror",
        )
        with ThreadPoolExecutor(1) as pool:
            mirroring = pool.submit(mirror.start)  # its JVM starts while the stacks do
            gateways: dict[str, Service] = {}
            for name in REGIONS:
                processor = clusters[name].processor(f"{name}-processor")
                gateways[name] = clusters[name].gateway(0)
                for service in (processor, gateways[name]):
                    service.env.update({**config, "LEADFLOW_REGION": name})
                    service.start()
            projector = clusters[ANALYTICS].projector(name="analytics-projector")
            projector.env.update(config)
            projector.env["LEADFLOW_ADMIN_API_KEY_SHA256"] = hash_api_key(ADMIN_KEY)
            projector.start()
            for name in REGIONS:
                clusters[name].services[0].wait_log("Worker ready")
                gateways[name].wait_ready()
            projector.wait_ready()
            mirroring.result()
        yield Deployment(brokers, clusters, gateways, projector, mirror)
    finally:
        for cluster in clusters.values():
            cluster.stop()
        if mirror is not None:
            mirror.stop()
        for broker in brokers.values():
            broker.stop()


async def records(bootstrap: str, topic: str) -> Records:
    return Counter(await read_topic(bootstrap, topic, PARTITIONS))


async def mirrored(deployment: Deployment, topic: str = "events") -> Records:
    """Wait until the analytics cluster's ``topic`` holds exactly the regions' records
    (same partition, key and value, none twice); return them."""
    name = f"{PREFIX}{topic}"
    deadline = time.monotonic() + MIRROR_SECONDS
    while True:
        regions = [await records(deployment.brokers[r].bootstrap, name) for r in REGIONS]
        union = sum(regions, Counter())
        analytics = await records(deployment.brokers[ANALYTICS].bootstrap, name)
        if analytics == union:
            return analytics
        missing, extra = union - analytics, analytics - union
        assert time.monotonic() < deadline, (
            f"{name}: {sum(missing.values())} records not mirrored, {sum(extra.values())} "
            f"not from a region\n{deployment.mirror.log_tail()}"
        )
        await asyncio.sleep(0.3)


async def abort_a_transaction(bootstrap: str) -> None:
    """One record in every events partition, in a transaction that is aborted."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="probe")
    await producer.start()
    try:
        await producer.begin_transaction()
        for partition in range(PARTITIONS):
            await producer.send(f"{PREFIX}events", PROBE, key=PROBE, partition=partition)
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def play(gateway: Service, seed: int, house: bool = False) -> str:
    """One visitor plays the flow to the end (``house``: answering "house" to the first
    question, a decision point); the conversation's id."""
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        frames = await visitor.start(FLOW)
        node = await visitor.answer_inputs()
        if house:
            assert "house" in {b["id"] for b in node["buttons"]}, node
            await visitor.press("house")
        await visitor.play_to_end(random.Random(seed))
        session = next(f for f in frames if f["type"] == "session")
        return str(session["conversation_id"])
    finally:
        await visitor.close()


@pytest.fixture(scope="module")
def snapshot_version(deployment: Deployment) -> str:
    """A posterior snapshot of solar-quote published on the analytics side, as its policy
    service does (archive and snapshot in one transaction), once both regions' processors
    installed it from their mirrored policy-snapshots topic."""
    version = "solar-quote@1#from-analytics"

    async def publish() -> None:
        publisher = SnapshotPublisher(
            deployment.clusters[ANALYTICS].settings, transactional_id=f"{PREFIX}policy"
        )
        await publisher.start()
        try:
            await publisher.publish(snapshot(latest(FLOW), version, seed=7))
        finally:
            await publisher.stop()

    asyncio.run(publish())
    for name in REGIONS:
        processor = deployment.clusters[name].services[0]
        processor.wait_log(f"policy snapshot {version} installed", timeout=MIRROR_SECONDS)
    return version


@pytest.fixture(scope="module")
def played(deployment: Deployment, snapshot_version: str) -> dict[str, set[str]]:
    """Conversations played to the end in each region with the mirrored snapshot (after
    an aborted transaction in region eu's events topic: the mirror had to read past it;
    the mirror killed with ``kill -9`` while they play and restarted after)."""

    def visits(first: int, last: int) -> list[Coroutine[Any, Any, str]]:
        return [
            play(deployment.gateways[name], seed=100 * r + i, house=i == 0)
            for r, name in enumerate(REGIONS)
            for i in range(first, last)
        ]

    async def run() -> list[str]:
        await abort_a_transaction(deployment.brokers[REGIONS[0]].bootstrap)
        # the mirror is killed while visitors play, and stays down while others do: the
        # regions serve on; restarted, it resumes where its last transaction ended
        playing = asyncio.gather(*visits(0, VISITS - 1))
        await asyncio.sleep(0.5)
        deployment.mirror.kill9()
        ids = await playing
        ids += await asyncio.gather(*visits(VISITS - 1, VISITS))
        await asyncio.to_thread(deployment.mirror.start)
        return ids

    ids = asyncio.run(run())
    return {name: {cid for cid in ids if cid.startswith(f"{name}~")} for name in REGIONS}


def leadflow(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``leadflow`` CLI against the analytics cluster (its Kafka, its Redis)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=deployment.env(ANALYTICS),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_both_regions_events_and_commands_reach_the_analytics_cluster(
    deployment: Deployment, played: dict[str, set[str]]
) -> None:
    events = await mirrored(deployment, "events")
    commands = await mirrored(deployment, "commands")
    by_region = {
        name: {key.decode() for (_, key, _) in await records(b.bootstrap, f"{PREFIX}events")}
        for name, b in deployment.brokers.items()
        if name in REGIONS
    }
    for name in REGIONS:
        assert by_region[name] == played[name]  # each region holds its own conversations
        assert all(cid.startswith(f"{name}~") for cid in played[name])  # homed there
    assert {key.decode() for (_, key, _) in events} == played[REGIONS[0]] | played[REGIONS[1]]
    assert {key.decode() for (_, key, _) in commands} == played[REGIONS[0]] | played[REGIONS[1]]
    # the aborted records stayed behind, though committed ones after them were copied
    assert not [r for r in events if r[1] == PROBE]
    region_a = await records(deployment.brokers[REGIONS[0]].bootstrap, f"{PREFIX}events")
    assert region_a, "region A wrote no events after the aborted transaction"


async def test_a_policy_snapshot_published_on_analytics_decides_in_both_regions(
    deployment: Deployment, played: dict[str, set[str]], snapshot_version: str
) -> None:
    for name in REGIONS:
        region = deployment.brokers[name].bootstrap
        decisions = [
            event
            for (_, _, value) in await records(region, f"{PREFIX}events")
            for event in decode_batch(value).events
            if isinstance(event, EdgeChosen)
        ]
        assert decisions, f"no decision in {name}"
        assert {d.policy_version for d in decisions} == {snapshot_version}, name
        # the archive came too: a replay in the region finds the version its decisions name
        archive = await read_topic(region, f"{PREFIX}policy-snapshot-archive", 1)
        assert f"{FLOW}/{snapshot_version}".encode() in {key for (_, key, _) in archive}


async def test_replay_verify_on_the_analytics_cluster_covers_both_regions(
    deployment: Deployment, played: dict[str, set[str]]
) -> None:
    events = await mirrored(deployment, "events")
    await mirrored(deployment, "commands")
    everyone = {key.decode() for (_, key, _) in events}
    assert everyone >= played[REGIONS[0]] | played[REGIONS[1]]
    done = await asyncio.to_thread(leadflow, deployment, "replay", "--verify", "--kafka", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["identical"] is True, summary
    # every conversation of both regions, their decisions replayed with the analytics
    # side's archive, the lead details unopened: the conversation keys stay in their
    # region's Redis (docs/runbook.md, "Regions")
    assert summary["verified"] == len(everyone), summary
    assert summary["decisions"] > 0 and summary["diverged"] == 0


async def test_the_analytics_read_side_counts_both_regions(
    deployment: Deployment, played: dict[str, set[str]]
) -> None:
    await mirrored(deployment, "events")
    everyone = played[REGIONS[0]] | played[REGIONS[1]]
    done = await asyncio.to_thread(leadflow, deployment, "export", "--kafka", "--out", "-")
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert {row["conversation_id"] for row in exported} >= everyone
    # the projector on the analytics cluster (its Redis) folds both regions' events
    api = f"http://127.0.0.1:{deployment.projector.port}/api/v1"
    deadline = time.monotonic() + MIRROR_SECONDS
    while True:
        funnel = await call("GET", f"{api}/flows/{FLOW}/funnel?version=1", ADMIN, 200)
        if funnel["totals"]["completed"] >= len(everyone):
            break
        assert time.monotonic() < deadline, funnel["totals"]
        await asyncio.sleep(0.3)
    assert funnel["totals"]["started"] >= len(everyone)


async def test_a_flow_published_on_the_analytics_side_reaches_both_regions(
    deployment: Deployment, played: dict[str, set[str]]
) -> None:
    for name in REGIONS:  # before: version 1 everywhere
        visitor = await Visitor.connect(deployment.gateways[name].ws_url)
        try:
            await visitor.start(FLOW)
            assert visitor.messages[0]["text"].startswith(OLD_GREETING)
        finally:
            await visitor.close()
    api = f"http://127.0.0.1:{deployment.projector.port}/api/v1"
    published = await call("POST", f"{api}/flows", ADMIN, 201, solar_v2_yaml())
    answered = time.monotonic()
    assert published["version"] == 2
    took = await asyncio.gather(
        *(
            seconds_until(deployment.gateways[name], NEW_GREETING, answered, bound=20.0)
            for name in REGIONS
        )
    )
    print(f"analytics publish -> version 2 in {', '.join(REGIONS)}: {took} s")
    for name in REGIONS:
        log = deployment.gateways[name].log_text()
        assert f"flow {FLOW} version 2 published" in log
    # the regions' flows topics hold the analytics side's records, each once
    source = await read_topic(deployment.brokers[ANALYTICS].bootstrap, f"{PREFIX}flows", 1)
    for name in REGIONS:
        copy = await read_topic(deployment.brokers[name].bootstrap, f"{PREFIX}flows", 1)
        assert Counter(source) - Counter(copy) == Counter(), name
