"""``leadflow policy evaluate`` and ``leadflow policy snapshot`` as subprocesses, on
real logs: a SQLite event log written by SqliteEventLog, and a real Kafka topic.

The log's decisions are made by the real ConversationService with a real
ThompsonPolicy (a snapshot around the simulator's truth, 5% floor) for visitors
of the synthetic solar-quote population, who answer as the population says and
leave their details with the population's true lead probability."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from policy.evaluation.truth import snapshot_near_truth
from policy.sim.conversations import Conversation
from policy.sim.population import Population
from policy.sim.solar import load_flow, solar_quote
from policy.snapshot import PolicySnapshot, decode_snapshot, encode_snapshot
from policy.snapshots_kafka import SnapshotPublisher
from policy.thompson import ThompsonPolicy
from schemas.batches import encode_batch
from schemas.commands import AnswerQuestion, PressButton, StartConversation, SubmitLead
from schemas.events import EdgeChosen, Event, LeadCaptured
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.conversation.service import ConversationService
from services.conversation.state import INPUT_ANSWERED
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from tests.support.distributed import Cluster
from tests.support.projection import produce
from tests.support.server import ROOT
from tests.support.traffic import simulate

FLOW = "solar-quote"


def population() -> Population:
    return solar_quote(load_flow(FLOW))


def logging_snapshot(pop: Population) -> PolicySnapshot:
    return snapshot_near_truth(pop, version="solar-quote@1#logging", noise=0.6, seed=3)


async def play(
    pop: Population, policy: ThompsonPolicy, conversations: int, seed: int
) -> list[Event]:
    """Visitors of ``pop`` through the real ConversationService deciding with ``policy``."""
    log = InMemoryEventLog()
    service = ConversationService(
        log, InMemoryKeyStore(), FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR), policy
    )
    for visitor in pop.visitors(conversations, seed):
        cid = visitor.conversation_id
        reply = await service.handle(
            StartConversation(
                conversation_id=cid,
                seq=1,
                at=visitor.started_at,
                flow_id=FLOW,
                site_id="demo",
                context=visitor.context,
            )
        )
        seq = 1
        answered: list[tuple[str, str]] = []
        while reply.messages and not reply.messages[-1].done:
            last = reply.messages[-1]
            seq += 1
            at = visitor.at(seq)
            if last.kind == "lead_form":
                events = await log.read_conversation(cid)
                decisions = tuple(
                    ((e.node_id, e.button_id), e.chosen)
                    for e in events
                    if isinstance(e, EdgeChosen)
                )
                p = pop.lead_probability(visitor, Conversation(tuple(answered), decisions, ""))
                if visitor.draw >= p:
                    break  # leaves without their details
                fields = {"name": "V", "email": f"{cid[:8]}@example.com", "consent": "true"}
                reply = await service.handle(
                    SubmitLead(
                        conversation_id=cid, seq=seq, at=at, node_id=last.node_id, fields=fields
                    )
                )
                continue
            if last.kind == "input":  # the first name: answered, as the population's walk has it
                answered.append((last.node_id, INPUT_ANSWERED))
                reply = await service.handle(
                    AnswerQuestion(
                        conversation_id=cid, seq=seq, at=at, node_id=last.node_id, value="Sam"
                    )
                )
                continue
            button = visitor.answers[last.node_id]
            answered.append((last.node_id, button))
            reply = await service.handle(
                PressButton(
                    conversation_id=cid, seq=seq, at=at, node_id=last.node_id, button_id=button
                )
            )
    return [e.event for e in await log.read_after(0, 1 << 62)]


def cloned(events: Sequence[Event], copies: int) -> list[Event]:
    """``copies`` copies of the log, each conversation under a new id (event ids follow)."""
    out: list[Event] = []
    for c in range(copies):
        for e in events:
            cid = f"{e.conversation_id[:-4]}{c:04d}"
            out.append(dataclasses.replace(e, conversation_id=cid, id=f"{cid}/{e.seq}"))
    return out


async def write_sqlite(
    data_dir: Path, events: Sequence[Event], snapshots: Sequence[PolicySnapshot] = ()
) -> None:
    log = SqliteEventLog(data_dir / "events.db")
    log.start()
    try:
        for i in range(0, len(events), 2000):
            await log.append(events[i : i + 2000])
        for s in snapshots:
            await log.archive_snapshot(
                s.flow_id, s.flow_version, s.version, s.created_at, encode_snapshot(s)
            )
    finally:
        log.close()


def leadflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def evaluate_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = leadflow("policy", "evaluate", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def estimate(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in result["estimates"] if e["estimator"] == name)


@pytest.fixture(scope="module")
def logged() -> tuple[list[Event], PolicySnapshot]:
    pop = population()
    snap = logging_snapshot(pop)
    policy = ThompsonPolicy()
    policy.install(snap)
    return asyncio.run(play(pop, policy, 800, seed=11)), snap


@pytest.fixture(scope="module")
def sqlite_dir(
    tmp_path_factory: pytest.TempPathFactory, logged: tuple[list[Event], PolicySnapshot]
) -> Path:
    events, snap = logged
    data_dir = tmp_path_factory.mktemp("ope") / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(write_sqlite(data_dir, events, [snap]))
    return data_dir


def test_evaluates_baselines_and_a_snapshot_on_a_real_sqlite_log(
    sqlite_dir: Path, logged: tuple[list[Event], PolicySnapshot], tmp_path: Path
) -> None:
    """The whole path: SQLite log -> source -> fold -> estimates; the logging
    policy's value is the share of conversations with a lead."""
    events, _ = logged
    starts = {e.conversation_id for e in events if e.type == "ConversationStarted"}
    leads = {e.conversation_id for e in events if isinstance(e, LeadCaptured)}
    decisions = sum(isinstance(e, EdgeChosen) for e in events)
    assert decisions > 500 and len(leads) > 50
    for candidate in ("uniform", "default"):
        result = evaluate_json("--candidate", candidate, "--data-dir", str(sqlite_dir))
        assert result["conversations"] == len(starts)
        assert result["decisions"] == decisions
        assert estimate(result, "logged")["value"] == pytest.approx(len(leads) / len(starts))
        for name in ("ips", "snips", "dr"):
            e = estimate(result, name)
            assert 0.0 <= e["low"] <= e["value"] <= e["high"] <= 1.5
        assert result["effective_sample_size"] > 10
    # the candidate is the logging snapshot itself: every weight is 1
    snap_file = tmp_path / "snap.json"
    done = leadflow(
        "policy", "snapshot", "--flow", FLOW, "--out", str(snap_file), "--data-dir", str(sqlite_dir)
    )
    assert done.returncode == 0, done.stderr
    assert "solar-quote@1#logging" in done.stdout
    result = evaluate_json("--candidate", str(snap_file), "--data-dir", str(sqlite_dir))
    logged_value = estimate(result, "logged")["value"]
    for name in ("ips", "snips"):
        assert estimate(result, name)["value"] == pytest.approx(logged_value, abs=1e-9)
    dr = estimate(result, "dr")  # V_t + (D - Q_t(a_t)): the model's terms do not cancel exactly
    assert dr["difference_low"] <= 0.0 <= dr["difference_high"]
    assert dr["value"] == pytest.approx(logged_value, abs=0.01)
    assert result["max_weight"] == pytest.approx(1.0)
    assert result["effective_sample_size"] == pytest.approx(result["conversations_with_decisions"])


def test_human_output_is_a_table_with_the_logging_policys_value(sqlite_dir: Path) -> None:
    done = leadflow("policy", "evaluate", "--candidate", "uniform", "--data-dir", str(sqlite_dir))
    assert done.returncode == 0, done.stderr
    for text in ("logging policy", "IPS", "SNIPS", "DR", "95% interval", "effective sample size"):
        assert text in done.stdout


def test_an_empty_range_says_so_and_exits_1(sqlite_dir: Path) -> None:
    done = leadflow(
        "policy",
        "evaluate",
        "--candidate",
        "uniform",
        "--data-dir",
        str(sqlite_dir),
        "--from",
        "2099-01-01",
    )
    assert done.returncode == 1
    assert "no logged decisions in this range" in done.stderr


def test_a_snapshot_of_another_flow_version_excludes_the_conversations(
    sqlite_dir: Path, logged: tuple[list[Event], PolicySnapshot], tmp_path: Path
) -> None:
    other = dataclasses.replace(logged[1], flow_version=2, version="solar-quote@2#x")
    path = tmp_path / "v2.json"
    path.write_bytes(encode_snapshot(other))
    done = leadflow("policy", "evaluate", "--candidate", str(path), "--data-dir", str(sqlite_dir))
    assert done.returncode == 1
    assert "no logged decisions in this range" in done.stderr
    assert "of another flow version" in done.stderr


def test_an_unknown_schema_version_stops_with_a_clear_error(
    logged: tuple[list[Event], PolicySnapshot], tmp_path: Path
) -> None:
    events, _ = logged
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(write_sqlite(data_dir, events[:200]))
    with sqlite3.connect(data_dir / "events.db") as conn:
        row = conn.execute(
            "SELECT position, body FROM events ORDER BY position LIMIT 1 OFFSET 50"
        ).fetchone()
        body = row[1].replace(b'"v":1', b'"v":99')
        assert body != row[1]
        conn.execute("UPDATE events SET body = ? WHERE position = ?", (body, row[0]))
    done = leadflow("policy", "evaluate", "--candidate", "uniform", "--data-dir", str(data_dir))
    assert done.returncode == 2
    assert "cannot read" in done.stderr and "99" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_logged_propensity_of_zero_is_an_error(
    logged: tuple[list[Event], PolicySnapshot], tmp_path: Path
) -> None:
    events, _ = logged
    first = next(i for i, e in enumerate(events) if isinstance(e, EdgeChosen))
    decision = events[first]
    assert isinstance(decision, EdgeChosen)
    broken = list(events[:400])
    broken[first] = dataclasses.replace(decision, propensity=0.0)
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(write_sqlite(data_dir, broken))
    done = leadflow("policy", "evaluate", "--candidate", "uniform", "--data-dir", str(data_dir))
    assert done.returncode == 2
    assert "propensity 0.0" in done.stderr and "Traceback" not in done.stderr


def test_a_log_of_over_100000_events(
    logged: tuple[list[Event], PolicySnapshot], tmp_path: Path
) -> None:
    events, _ = logged
    copies = 100_000 // len(events) + 1
    big = cloned(events, copies)
    assert len(big) >= 100_000
    data_dir = tmp_path / "big"
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(write_sqlite(data_dir, big))
    result = evaluate_json("--candidate", "default", "--data-dir", str(data_dir))
    assert result["events"] == len(big)
    assert result["conversations"] == copies * sum(e.type == "ConversationStarted" for e in events)


def test_evaluates_from_a_real_kafka_topic_like_from_sqlite(
    cluster: Cluster, sqlite_dir: Path, logged: tuple[list[Event], PolicySnapshot]
) -> None:
    events, _ = logged
    asyncio.run(produce(cluster, events))
    from_kafka = evaluate_json("--candidate", "uniform", "--kafka", env=cluster.env)
    from_sqlite = evaluate_json("--candidate", "uniform", "--data-dir", str(sqlite_dir))
    for key in ("conversations", "decisions", "estimates", "effective_sample_size"):
        assert from_kafka[key] == from_sqlite[key], key
    empty = leadflow(
        "policy",
        "evaluate",
        "--candidate",
        "uniform",
        "--kafka",
        "--from",
        "2099-01-01",
        env=cluster.env,
    )
    assert empty.returncode == 1 and "no logged decisions in this range" in empty.stderr


async def produce_raw(cluster: Cluster, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(f"{cluster.prefix}events", key=key.encode(), value=value)
    finally:
        await producer.stop()


def test_kafka_an_unknown_schema_version_stops_with_a_clear_error(
    cluster: Cluster, logged: tuple[list[Event], PolicySnapshot]
) -> None:
    events, _ = logged
    asyncio.run(produce(cluster, events[:300]))
    record = encode_batch([events[0]])
    newer = record.replace(b'"v":1}', b'"v":99}', 1)  # the event's version, not the batch's
    assert newer != record
    asyncio.run(produce_raw(cluster, events[0].conversation_id, newer))
    done = leadflow("policy", "evaluate", "--candidate", "uniform", "--kafka", env=cluster.env)
    assert done.returncode == 2
    assert "cannot read the Kafka events topic" in done.stderr and "99" in done.stderr
    assert "Traceback" not in done.stderr


def test_kafka_snapshot_is_fetched_from_the_topics_and_evaluated(
    cluster: Cluster, logged: tuple[list[Event], PolicySnapshot], tmp_path: Path
) -> None:
    """``policy snapshot --kafka`` gives the newest snapshot of the live topic, or a
    named version from the archive; evaluate takes the file."""
    events, snap = logged
    newer = dataclasses.replace(snap, version="solar-quote@1#newer", created_at=snap.created_at + 1)

    async def publish() -> None:
        publisher = SnapshotPublisher(cluster.settings)
        await publisher.start()
        try:
            await publisher.publish(snap)
            await publisher.publish(newer)
        finally:
            await publisher.stop()

    asyncio.run(publish())
    asyncio.run(produce(cluster, events))
    current, named = tmp_path / "current.json", tmp_path / "named.json"
    done = leadflow(
        "policy", "snapshot", "--kafka", "--flow", FLOW, "--out", str(current), env=cluster.env
    )
    assert done.returncode == 0, done.stderr
    assert decode_snapshot(current.read_bytes()).version == "solar-quote@1#newer"
    done = leadflow(
        "policy",
        "snapshot",
        "--kafka",
        "--flow",
        FLOW,
        "--version",
        snap.version,
        "--out",
        str(named),
        env=cluster.env,
    )
    assert done.returncode == 0, done.stderr
    assert decode_snapshot(named.read_bytes()).version == snap.version
    result = evaluate_json("--candidate", str(named), "--kafka", env=cluster.env)
    assert result["max_weight"] == pytest.approx(1.0)  # the logging policy itself
    missing = leadflow(
        "policy",
        "snapshot",
        "--kafka",
        "--flow",
        "no-such-flow",
        "--out",
        str(named),
        env=cluster.env,
    )
    assert missing.returncode == 2 and "no usable snapshot of flow 'no-such-flow'" in missing.stderr


def test_kafka_a_log_of_over_100000_events(
    cluster: Cluster, logged: tuple[list[Event], PolicySnapshot]
) -> None:
    events, _ = logged
    copies = 100_000 // len(events) + 1
    big = cloned(events, copies)
    asyncio.run(produce(cluster, big))
    result = evaluate_json("--candidate", "default", "--kafka", env=cluster.env)
    assert result["events"] == len(big) >= 100_000
    assert result["conversations"] == copies * sum(e.type == "ConversationStarted" for e in events)


def test_evaluate_never_imports_pymc(sqlite_dir: Path) -> None:
    """The evaluate path is numpy only: a whole evaluation (validation module
    included) in a fresh interpreter leaves PyMC and its stack unimported."""
    code = (
        "import json, sys\n"
        "from app import cli\n"
        "import policy.evaluation.validate\n"
        f"rc = cli.main(['policy', 'evaluate', '--candidate', 'uniform', '--json',"
        f" '--data-dir', {str(sqlite_dir)!r}])\n"
        "stack = ('pymc', 'pytensor', 'arviz')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in stack)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    last = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "heavy": []}


def test_a_uniform_log_of_several_flows_needs_a_flow(tmp_path: Path) -> None:
    """tests.support.traffic: every example flow, decided by the uniform policy
    (which logs no context cell: the fold takes the visitor's cell at the
    decision). Several flows in the range: one must be chosen."""
    traffic = asyncio.run(simulate(600, seed=5))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    asyncio.run(write_sqlite(data_dir, traffic.events))
    done = leadflow("policy", "evaluate", "--candidate", "uniform", "--data-dir", str(data_dir))
    assert done.returncode == 2 and "choose one with --flow" in done.stderr
    result = evaluate_json("--candidate", "uniform", "--flow", FLOW, "--data-dir", str(data_dir))
    for name in ("ips", "snips"):  # the candidate is the logging policy
        assert estimate(result, name)["value"] == pytest.approx(estimate(result, "logged")["value"])
    assert result["effective_sample_size"] == pytest.approx(result["conversations_with_decisions"])
    # the default edge is far from uniform on 600 conversations: below the ESS floor
    args = ("--candidate", "default", "--flow", FLOW, "--data-dir", str(data_dir))
    refused = leadflow("policy", "evaluate", *args)
    assert refused.returncode == 1, refused.stderr
    assert "no estimate: the effective sample size is" in refused.stdout
    assert "below the floor of 50 (--min-ess)" in refused.stdout
    assert "DR " not in refused.stdout
    default = evaluate_json(*args, "--min-ess", "0")
    assert default["refused"] is None
    assert 0.0 < default["zero_support_share"] < 1.0
