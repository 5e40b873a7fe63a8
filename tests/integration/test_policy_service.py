"""Bayesian edge selection end to end, on a real broker and real processes.

* a running processor picks up published snapshots without a restart, and
  the ``EdgeChosen`` events it logs carry each snapshot's version and exactly the
  propensities (and choices, and seeds) the ThompsonPolicy gives with it;
* the policy service folds the ``events`` topic, fits in its worker process,
  publishes to the compacted topic, and answers ``/flows/{id}/summary``,
  ``POST /decide`` and the guardrails endpoints;
* the embedded mode (``leadflow serve``) fits in the background and ends up
  deciding from a fitted snapshot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from policy.features import FEATURE_NAMES
from policy.fit_versions import split_version
from policy.flow_snapshots import decision_points
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot, decode_snapshot
from policy.snapshots_kafka import SnapshotPublisher
from policy.thompson import ThompsonPolicy
from schemas.events import ConversationStarted, EdgeChosen, Event, decode_event
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.distributed.topics import snapshots_topic
from services.http_auth import hash_api_key
from services.policy_port import DecisionPoint
from tests.support.distributed import Cluster, Service, read_topic
from tests.support.projection import logged_events, produce
from tests.support.server import ServerProcess, free_port
from tests.support.traffic import simulate
from tests.support.visitor import Visitor

FLOW = "solar-quote"
ADMIN_KEY = "policy-admin-key-0123456789abcdef"
FITTED = re.compile(r"^solar-quote@1#\d{8}T\d{6}\.\d{3}Z(\.\d+)?$")
# small, fast fits (a few seconds each once PyMC is imported), with loose diagnostics:
# these tests are about the plumbing; the model's own tests hold it to its thresholds
FAST_FITS = {
    "LEADFLOW_POLICY_DRAWS": "400",
    "LEADFLOW_POLICY_TUNE": "300",
    "LEADFLOW_POLICY_MAX_RHAT": "1.1",
    "LEADFLOW_POLICY_MIN_ESS": "100",
    "LEADFLOW_POLICY_MAX_DIVERGENCES": "20",
    "LEADFLOW_POLICY_TICK_SECONDS": "0.2",
    "LEADFLOW_POLICY_FIT_TIMEOUT_SECONDS": "120",
}


def catalog() -> FlowCatalog:
    return FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)


def built_snapshot(version: str, favourite: int, created_at: float) -> PolicySnapshot:
    """A snapshot of solar-quote@1 built with numpy: at every decision point the
    candidate ``favourite`` is usually best, with context slopes that matter."""
    flow = catalog().get(FLOW, 1)
    assert flow is not None
    rng = np.random.default_rng(favourite)
    points = {}
    for key, candidates in decision_points(flow).items():
        k = len(candidates)
        base = rng.normal(-1.5, 0.6, size=(120, k))
        base[:, favourite % k] += 0.8
        slopes = rng.normal(0.0, 0.5, size=(120, k, len(FEATURE_NAMES)))
        points[key] = PointPosterior(
            node_id=key[0],
            button_id=key[1],
            candidates=candidates,
            base=base.astype(np.float32),
            slopes=slopes.astype(np.float32),
        )
    return PolicySnapshot(
        flow_id=FLOW,
        flow_version=1,
        version=version,
        created_at=created_at,
        points=points,
        guardrails=Guardrails(min_exploration=0.1, holdout=0.2),
    )


async def publish(cluster: Cluster, snapshot: PolicySnapshot) -> None:
    publisher = SnapshotPublisher(cluster.settings)
    await publisher.start()
    try:
        await publisher.publish(snapshot)
    finally:
        await publisher.stop()


async def play(ws_url: str, conversations: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ids = []
    for i in range(conversations):
        visitor = await Visitor.connect(ws_url)
        try:
            context = {
                "device": rng.choice(["desktop", "mobile", "tablet"]),
                "utm_source": rng.choice(["google", "facebook", "", "newsletter"]),
                "locale": rng.choice(["en-GB", "de-DE"]),
                "time_zone": rng.choice(["Europe/Berlin", "America/New_York", "UTC"]),
            }
            await visitor.start(FLOW, **context)
            await visitor.play_to_end(random.Random(seed * 1000 + i))
        finally:
            await visitor.close()
        ids.append(visitor.conversation_id)
    return ids


def decisions(events: list[Event], conversations: set[str]) -> list[tuple[EdgeChosen, Any]]:
    """Each EdgeChosen of ``conversations`` with its conversation's visitor context."""
    contexts = {e.conversation_id: e.context for e in events if isinstance(e, ConversationStarted)}
    return [
        (e, contexts[e.conversation_id])
        for e in events
        if isinstance(e, EdgeChosen) and e.conversation_id in conversations
    ]


def replayed(policy: ThompsonPolicy, event: EdgeChosen, context: Any) -> DecisionPoint:
    return DecisionPoint(
        conversation_id=event.conversation_id,
        command_seq=event.command_seq,
        flow_id=FLOW,
        flow_version=1,
        node_id=event.node_id,
        button_id=event.button_id,
        candidates=event.candidates,
        context=context,
        at=event.at,
    )


def assert_decided_by(snapshot: PolicySnapshot, logged: list[tuple[EdgeChosen, Any]]) -> None:
    """Every decision is the policy's with this snapshot: version, seed, choice and
    the propensity ``distribution(point).probabilities()`` gives the choice."""
    policy = ThompsonPolicy()
    assert policy.install(snapshot)
    assert logged
    for event, context in logged:
        point = replayed(policy, event, context)
        dist = policy.distribution(point)
        assert dist is not None
        index = event.candidates.index(event.chosen)
        assert event.policy_version == snapshot.version
        assert event.propensity == pytest.approx(dist.probabilities()[index], abs=1e-12)
        choice = policy.choose(point)
        assert (choice.chosen, choice.seed, choice.features) == (
            event.chosen,
            event.seed,
            event.features,
        )


async def wait_for(
    cluster: Cluster, conversations: set[str], within: float = 20.0
) -> list[tuple[EdgeChosen, Any]]:
    deadline = time.monotonic() + within
    while True:
        events = await logged_events(cluster)
        logged = decisions(events, conversations)
        done = {e.conversation_id for e in events if e.conversation_id in conversations}
        if done == conversations or time.monotonic() > deadline:
            return logged
        await asyncio.sleep(0.2)


async def test_a_running_processor_hot_swaps_published_snapshots(cluster: Cluster) -> None:
    processor = cluster.processor().start()
    gateway = cluster.gateway(0).start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    pid = processor.proc.pid if processor.proc else None

    before = set(await play(gateway.ws_url, 6, seed=1))
    for event, _ in await wait_for(cluster, before):
        assert event.policy_version == "uniform-v1"  # no snapshot yet

    first = built_snapshot("solar-quote@1#test.1", favourite=1, created_at=time.time())
    await publish(cluster, first)
    processor.wait_log(first.version, timeout=20)
    with_first = set(await play(gateway.ws_url, 12, seed=2))
    logged = await wait_for(cluster, with_first)
    assert_decided_by(first, logged)
    # the holdout and the floor are in the logged propensities: not all 1/k
    assert {round(e.propensity, 6) for e, _ in logged} - {0.5, round(1 / 3, 6)}

    second = built_snapshot("solar-quote@1#test.2", favourite=0, created_at=time.time())
    await publish(cluster, second)
    processor.wait_log(second.version, timeout=20)
    with_second = set(await play(gateway.ws_url, 12, seed=3))
    assert_decided_by(second, await wait_for(cluster, with_second))

    # an older snapshot published late is refused; so is one for an unknown version
    await publish(cluster, built_snapshot("solar-quote@1#stale", 1, created_at=1.0))
    unknown = built_snapshot("solar-quote@9#x", 1, created_at=time.time())
    await publish(cluster, dataclasses.replace(unknown, flow_version=9))
    processor.wait_log("not served here", timeout=20)
    later = set(await play(gateway.ws_url, 4, seed=4))
    assert_decided_by(second, await wait_for(cluster, later))
    assert processor.proc is not None and processor.proc.pid == pid
    assert processor.proc.poll() is None  # never restarted


async def test_a_restarted_processor_loads_the_snapshot_before_deciding(
    cluster: Cluster,
) -> None:
    snapshot = built_snapshot("solar-quote@1#preloaded", favourite=2, created_at=time.time())
    await publish(cluster, snapshot)
    processor = cluster.processor().start()
    gateway = cluster.gateway(0).start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    played = set(await play(gateway.ws_url, 6, seed=5))
    assert_decided_by(snapshot, await wait_for(cluster, played))
    assert "policy snapshots loaded" in processor.log_text()


def policy_service(cluster: Cluster, **env: str) -> Service:
    port = free_port()
    service = Service(
        "policy",
        ["run", "policy"],
        {
            **cluster.env,
            **FAST_FITS,
            "LEADFLOW_POLICY_PORT": str(port),
            "LEADFLOW_POLICY_MIN_OUTCOMES": "20",
            "LEADFLOW_POLICY_REFIT_SECONDS": "3600",
            "LEADFLOW_POLICY_UPDATE_SECONDS": "1",
            # the traffic is a finished batch, one command a second: without a short
            # idle time its last half hour of log time would stay open (not counted);
            # shorter than ten minutes, the simulated visitors' interleaving (minutes
            # between two commands of one visitor) ends conversations before their
            # decision (solar-quote's first question is free text: one command more)
            "LEADFLOW_POLICY_IDLE_SECONDS": "600",
            **env,
        },
        cluster.workdir / "policy.log",
        port,
    )
    cluster.services.append(service)
    return service


def wait_leader(service: Service, within: float = 30.0) -> Service:
    """Ready is not leading: the instance joins the leader election once caught up,
    and only the leader publishes (a guardrail change's answer names the snapshot)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status, body = http("GET", f"http://127.0.0.1:{service.port}/readyz")
        if status == 200 and body.get("role") == "leader":
            return service
        time.sleep(0.2)
    raise AssertionError(f"{service.name} did not lead within {within} s")


def http(method: str, url: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")


async def wait_snapshot(
    cluster: Cluster, wanted: Callable[[PolicySnapshot], bool], within: float = 60.0
) -> PolicySnapshot:
    """The first snapshot in the compacted topic that is ``wanted``."""
    topic = snapshots_topic(cluster.settings)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for _, _, value in await read_topic(cluster.bootstrap, topic, 1):
            snapshot = decode_snapshot(value)
            if wanted(snapshot):
                return snapshot
        await asyncio.sleep(0.3)
    raise AssertionError(f"no such snapshot within {within} s")


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text: str = resp.read().decode()
        return text


def wait_summary(base: str, within: float = 150.0) -> dict[str, Any]:
    """Generous: a first fit compiles PyMC's C code, and the CI runs two shards at once."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status, body = http("GET", f"{base}/flows/{FLOW}/summary")
        if status == 200:
            assert isinstance(body, dict)
            return body
        assert status == 404 and body["error"]["code"] == "no_snapshot", body
        time.sleep(0.3)
    raise AssertionError(f"no snapshot for {FLOW} within {within} s")


async def test_the_policy_service_fits_publishes_and_answers(cluster: Cluster) -> None:
    traffic = await simulate(450, seed=41)  # the three example flows, round robin; one fitted
    await produce(cluster, traffic.events)
    service = policy_service(
        cluster,
        LEADFLOW_POLICY_KILLED="insurance-quote,saas-demo",
        LEADFLOW_POLICY_REFIT_SECONDS="5",  # a fit that fails its diagnostics is retried soon
    ).start()
    service.wait_ready(timeout=30)
    base = f"http://127.0.0.1:{service.port}"

    summary = wait_summary(base)  # the fit, or already the learner's update of it
    assert FITTED.match(summary["policy_version"]), summary["policy_version"]
    fit = await wait_snapshot(
        cluster, lambda s: s.flow_id == FLOW and s.diagnostics.get("source") == "fit"
    )
    assert FITTED.match(fit.version) and split_version(fit.version)[1] is None, fit.version
    assert split_version(summary["policy_version"])[0] == fit.version

    # outcomes counted after the fit: the online learner's posterior (re-seeded from the
    # fit, or kept over it) is published within seconds, numbered after the fit
    await produce(cluster, (await simulate(60, seed=42, prefix="after")).events)
    updated = await wait_snapshot(cluster, lambda s: s.version.startswith(f"{fit.version}."))
    assert updated.diagnostics["source"] == "online"
    assert updated.diagnostics["fit_version"] == fit.version
    assert updated.diagnostics["outcomes"] > 0
    summary = wait_summary(base)  # whatever is installed now: an update or a refit
    assert summary["credible_interval"] == 0.9
    points = summary["decision_points"]
    flow = catalog().get(FLOW, 1)
    assert flow is not None
    assert {(p["node_id"], p["button_id"]) for p in points} == set(decision_points(flow))
    for point in points:
        shares = [edge["share"] for edge in point["edges"]]
        assert sum(shares) == pytest.approx(1.0, abs=1e-4)
        assert min(shares) >= 0.05 - 1e-6  # the exploration floor
        for edge in point["edges"]:
            low, high = edge["interval"]
            assert 0.0 <= low <= edge["conversion"] <= high <= 1.0
    assert sum(e["outcomes"] for p in points for e in p["edges"]) >= 20

    # an external decision, with the propensity of the policy's distribution
    point = points[0]
    body = {
        "conversation_id": "external-1",
        "command_seq": 4,
        "flow_id": FLOW,
        "node_id": point["node_id"],
        "button_id": point["button_id"],
        "context": {"device": "mobile", "utm_source": "google", "time_zone": "Europe/Paris"},
    }
    status, decided = http("POST", f"{base}/decide", body)
    assert status == 200, decided
    assert decided["chosen"] in decided["probabilities"]
    assert decided["propensity"] == pytest.approx(decided["probabilities"][decided["chosen"]])
    assert decided["policy_version"].startswith("solar-quote@1#")
    assert "device=mobile" in decided["features"]
    assert http("POST", f"{base}/decide", body)[1] == decided  # deterministic
    status, error = http("POST", f"{base}/decide", {"flow_id": FLOW})
    assert status == 400 and error["error"]["code"] == "bad_request"
    status, error = http("GET", f"{base}/flows/no-such-flow/summary")
    assert status == 404 and error["error"]["code"] == "no_snapshot"

    # the killed flow got a kill snapshot without a fit; guardrails can change live
    status, rails = http("GET", f"{base}/flows/insurance-quote/guardrails")
    assert status == 200 and rails["guardrails"]["killed"] is True
    status, changed = http("PUT", f"{base}/flows/{FLOW}/guardrails", {"holdout": 0.5})
    assert status == 200 and FITTED.match(changed["policy_version"])
    assert changed["policy_version"] != summary["policy_version"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, now = http("GET", f"{base}/flows/{FLOW}/summary")
        if now["guardrails"]["holdout"] == 0.5:
            break
        await asyncio.sleep(0.2)
    assert now["guardrails"]["holdout"] == 0.5

    # every published snapshot is in the compacted topic, keyed by flow id
    records = await read_topic(cluster.bootstrap, snapshots_topic(cluster.settings), 1)
    published = [decode_snapshot(value) for _, _, value in records]
    assert {key for _, key, _ in records} >= {FLOW.encode(), b"insurance-quote"}
    assert next(s for s in published if s.flow_id == "insurance-quote").guardrails.killed
    log_text = service.log_text()
    assert "policy fit published" in log_text and "policy ledger caught up" in log_text
    metrics = http_text(f"{base}/metrics")
    assert "leadflow_policy_snapshots_published_total" in metrics


async def test_decisions_in_the_log_come_from_the_policy_service_s_fit(
    cluster: Cluster,
) -> None:
    """The whole loop: traffic in the log, the policy service fits and publishes, a
    processor decides with the fitted posterior and logs its propensities."""
    await produce(cluster, (await simulate(300, seed=43)).events)
    service = policy_service(
        cluster,
        LEADFLOW_POLICY_KILLED="insurance-quote,saas-demo",
        LEADFLOW_POLICY_UPDATE_SECONDS="0",
        LEADFLOW_POLICY_REFIT_SECONDS="2",
    ).start()
    processor = cluster.processor().start()
    gateway = cluster.gateway(0).start()
    service.wait_ready(timeout=30)
    base = f"http://127.0.0.1:{service.port}"
    version = wait_summary(base)["policy_version"]
    processor.wait_log("Worker ready")
    processor.wait_log(version, timeout=20)
    gateway.wait_ready()
    played = set(await play(gateway.ws_url, 10, seed=6))
    logged = await wait_for(cluster, played)
    records = await read_topic(cluster.bootstrap, snapshots_topic(cluster.settings), 1)
    [fitted] = [s for s in (decode_snapshot(v) for _, _, v in records) if s.version == version]
    assert_decided_by(fitted, logged)


def edge_versions(data_dir: Path) -> list[str]:
    with sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT body FROM events WHERE type = 'EdgeChosen'").fetchall()
    events = [decode_event(body) for (body,) in rows]
    return [e.policy_version for e in events if isinstance(e, EdgeChosen)]


async def test_the_embedded_mode_learns_in_a_background_process(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        env={
            **FAST_FITS,
            "LEADFLOW_POLICY_MIN_OUTCOMES": "15",
            "LEADFLOW_POLICY_REFIT_SECONDS": "2",
            "LEADFLOW_POLICY_HORIZON_SECONDS": "1",
            "LEADFLOW_POLICY_KILLED": "insurance-quote,saas-demo",
            "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY),
        },
    ).start()
    try:
        deadline = time.monotonic() + 150  # a first fit on a busy machine (two CI shards)
        round_ = 0
        while time.monotonic() < deadline:
            round_ += 1
            await play(server.ws_url, 5, seed=100 + round_)
            fitted = [v for v in edge_versions(server.data_dir) if FITTED.match(v)]
            if fitted:
                break
            await asyncio.sleep(0.5)
        assert fitted, "no decision came from a fitted snapshot"
        assert server.proc is not None and server.proc.poll() is None
        # the policy API, on the public port under /policy, wants the admin key
        url = f"{server.http_url}/policy/flows/{FLOW}/summary"
        status, summary = http("GET", url, key=ADMIN_KEY)
        assert status == 200 and FITTED.match(summary["policy_version"])
        assert http("GET", url)[0] == 401
    finally:
        server.stop()
