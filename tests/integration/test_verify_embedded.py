"""``leadflow replay --verify`` on real embedded logs: a live ``leadflow serve`` played
by WebSocket visitors, kill -9 mid-load, tampered rows, unknown schema versions, an
empty range, and a log of more than 100,000 events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.embedded import EmbeddedLearning
from policy.settings import PolicySettings
from policy.snapshot import Guardrails
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.conversation.service import ConversationService
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_keystore import SqliteKeyStore
from tests.support.journaled_traffic import email_of, play
from tests.support.server import ROOT, ServerProcess
from tests.support.verify_snapshots import latest, snapshot
from tests.support.visitor import Visitor, valid_answer

ADMIN_KEY = "verify-admin-key-0123456789"
EMAIL = "replay-verify-secret@example.org"


def verify(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "replay",
            "--verify",
            "--data-dir",
            str(data_dir),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


async def _visit(ws_url: str, flow: str, rng: random.Random, pause: float = 0.0) -> None:
    visitor = await Visitor.connect(ws_url)
    try:
        await visitor.start(flow, device="mobile", utm_source="google")
        while True:
            node = visitor.current()
            assert node is not None
            if node["done"]:
                return
            await asyncio.sleep(pause)
            if node["kind"] == "question":
                await visitor.press(rng.choice(node["buttons"])["id"])
                continue
            if node["kind"] == "input":  # insurance-quote's free-text question (flow v2)
                await visitor.answer(valid_answer(node["input"]))
                continue
            if rng.random() < 0.3:  # a refused lead first: its fields are journaled too
                await visitor.lead({"name": "A", "email": "not-an-email", "consent": "true"})
            await visitor.lead({"name": "Verify Visitor", "email": EMAIL, "consent": "true"})
    finally:
        await visitor.close()


def _put_guardrails(server: ServerProcess, flow: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.http_url}/policy/flows/{flow}/guardrails",
        data=orjson.dumps(body),
        method="PUT",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer: dict[str, Any] = orjson.loads(resp.read())
        return answer


def _dump(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


async def test_a_served_log_verifies_and_a_tampered_row_is_the_first_divergence(
    fresh_server: ServerProcess,
) -> None:
    """Visitors over WebSockets, a kill switch set over HTTP (a snapshot the server
    archives before installing it): the log verifies, read-only; the journal holds no
    contact details in clear; a changed chosen edge is reported at its event."""
    fresh_server.env = {
        "LEADFLOW_ADMIN_API_KEY_SHA256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    }
    fresh_server.start()
    rng = random.Random(5)
    flows = ("solar-quote", "insurance-quote", "saas-demo")
    await asyncio.gather(*(_visit(fresh_server.ws_url, flows[i % 3], rng) for i in range(12)))
    answer = _put_guardrails(fresh_server, "solar-quote", {"killed": True})
    killed = answer["policy_version"]
    assert killed.startswith("solar-quote@1#")
    await asyncio.gather(*(_visit(fresh_server.ws_url, "solar-quote", rng) for _ in range(6)))

    db = fresh_server.data_dir / "events.db"
    live = verify(fresh_server.data_dir)  # while the server runs
    assert live.returncode == 0, live.stdout + live.stderr
    fresh_server.stop()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        decisions = conn.execute(
            "SELECT count(*) FROM events WHERE type = 'EdgeChosen'"
        ).fetchone()[0]
        versions = {
            orjson.loads(b)["policy_version"]
            for (b,) in conn.execute("SELECT body FROM events WHERE type = 'EdgeChosen'")
        }
        archived = [r[0] for r in conn.execute("SELECT version FROM policy_snapshots")]
        journaled = conn.execute("SELECT count(*) FROM commands").fetchone()[0]
    assert f"{killed}:killed" in versions and "uniform-v1" in versions
    assert archived == [killed]
    assert journaled >= 18 * 3
    assert live.stdout.splitlines()[0] == (
        f"verified 18 conversations ({events:,} events, {decisions:,} decisions): identical"
    )
    before = _dump(db)
    assert verify(fresh_server.data_dir).returncode == 0
    assert _dump(db) == before, "verification must not write"
    for path in fresh_server.data_dir.glob("events.db*"):
        assert EMAIL.encode() not in path.read_bytes(), f"contact details in clear in {path.name}"

    with contextlib.closing(sqlite3.connect(db)) as conn:
        position, body = conn.execute(
            "SELECT position, body FROM events WHERE type = 'EdgeChosen' ORDER BY position LIMIT 1"
        ).fetchone()
        event = orjson.loads(body)
        other = next(c for c in event["candidates"] if c != event["chosen"])
        conn.execute(
            "UPDATE events SET body = ? WHERE position = ?",
            (orjson.dumps({**event, "chosen": other}), position),
        )
        conn.commit()
    tampered = verify(fresh_server.data_dir)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    lines = tampered.stdout.splitlines()
    assert lines[0].endswith(": 1 diverged")
    assert lines[1] == (
        f"first divergence in conversation {event['conversation_id']} at event seq {event['seq']}"
        f" (id {event['id']}, EdgeChosen, command {event['command_seq']}, events position"
        f" {position}): the replayed event differs from the logged one"
    )
    assert lines[2] == f'  chosen: logged "{other}", replayed "{event["chosen"]}"'


async def test_journal_and_events_agree_after_kill9_mid_load(fresh_server: ServerProcess) -> None:
    """The journal is written in the events' transaction: whatever a kill -9 cut off,
    every conversation of the log still verifies."""
    fresh_server.start()
    rng = random.Random(9)
    flows = ("solar-quote", "insurance-quote", "saas-demo")
    tasks = [
        asyncio.create_task(_visit(fresh_server.ws_url, flows[i % 3], rng, pause=0.05))
        for i in range(30)
    ]
    await asyncio.sleep(0.4)
    fresh_server.kill9()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(r, BaseException) for r in results), "the kill should cut visitors off"
    done = verify(fresh_server.data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    with contextlib.closing(sqlite3.connect(fresh_server.data_dir / "events.db")) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM commands c WHERE NOT EXISTS (SELECT 1 FROM events e"
            " WHERE e.conversation_id = c.conversation_id AND e.seq = c.event_seq)"
        ).fetchone()[0]
        unjournaled = conn.execute(
            "SELECT count(*) FROM events e WHERE e.seq = 1 AND NOT EXISTS (SELECT 1 FROM"
            " commands c WHERE c.conversation_id = e.conversation_id AND c.event_seq = 1)"
        ).fetchone()[0]
        conversations = conn.execute("SELECT count(*) FROM events WHERE seq = 1").fetchone()[0]
    assert (orphans, unjournaled) == (0, 0)
    assert done.stdout.startswith(f"verified {conversations} conversations (")


async def _build(data_dir: Path, conversations: int, seed: int = 11) -> None:
    """A log made by the real service on the SQLite adapters, with snapshots installed
    through the embedded app's learning (archived first), one of them killed."""
    catalog = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)
    log = SqliteEventLog(data_dir / "events.db")
    keys = SqliteKeyStore(data_dir / "keys.db")
    log.start()
    keys.start()
    try:
        learning = EmbeddedLearning(PolicySettings(), catalog, log)
        await learning._install(snapshot(latest("solar-quote"), "solar-quote@1#v1", seed=1))
        await learning._install(
            snapshot(
                latest("insurance-quote"),
                "insurance-quote@1#v1",
                seed=2,
                rails=Guardrails(holdout=0.2),
            )
        )
        await learning.scheduler.set_guardrails("saas-demo", Guardrails(killed=True))
        service = ConversationService(log, keys, catalog, learning.policy)
        half = conversations // 2
        await play(service, half, seed=seed)
        await learning._install(snapshot(latest("solar-quote"), "solar-quote@1#v2", seed=3))
        await play(service, conversations - half, seed=seed + 1, prefix="w", t0=1_800_000_000.0)
    finally:
        keys.close()
        log.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("verify") / "data"
    data_dir.mkdir()
    asyncio.run(_build(data_dir, 300))
    return data_dir


def _copy(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for path in built.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_an_empty_range_verifies_nothing_and_succeeds(built: Path) -> None:
    """--from after the last conversation: nothing to verify, exit 0."""
    done = verify(built, "--from", "2030-01-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "verified 0 conversations (0 events, 0 decisions): identical"
    part = verify(built, "--from", "2027-01-01", "--json")
    assert part.returncode == 0
    summary = orjson.loads(part.stdout)
    assert summary["conversations"] == 150 and summary["identical"]  # the second half


@pytest.mark.parametrize("table", ["events", "commands"])
def test_a_schema_version_the_reader_does_not_know_is_a_clear_error(
    built: Path, tmp_path: Path, table: str
) -> None:
    """An event or journaled command of an unknown version: exit 2, naming its position."""
    data = _copy(built, tmp_path)
    with contextlib.closing(sqlite3.connect(data / "events.db")) as conn:
        position, body = conn.execute(
            f"SELECT position, body FROM {table} ORDER BY position LIMIT 1 OFFSET 40"
        ).fetchone()
        record = orjson.loads(body)
        conn.execute(
            f"UPDATE {table} SET body = ? WHERE position = ?",
            (orjson.dumps({**record, "v": 9}), position),
        )
        conn.commit()
    done = verify(data)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        f"leadflow: cannot verify the log: {table} position {position}:"
        f" {record['type']} version 9 is not supported (this reader knows v1)"
    )


def test_an_erased_key_is_verified_without_lead_details(built: Path, tmp_path: Path) -> None:
    """leadflow erase deletes a key: its conversation still verifies, lead details aside."""
    data = _copy(built, tmp_path)
    with contextlib.closing(sqlite3.connect(data / "events.db")) as conn:
        (cid,) = conn.execute(
            "SELECT conversation_id FROM events WHERE type = 'LeadCaptured' LIMIT 1"
        ).fetchone()
    erase = subprocess.run(
        [sys.executable, "-m", "app.cli", "erase", cid, "--data-dir", str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert erase.returncode == 0, erase.stderr
    done = verify(data)
    assert done.returncode == 0, done.stdout
    assert "  1 of them without lead details (key erased)" in done.stdout.splitlines()


def test_a_log_of_100k_events_verifies(tmp_path: Path) -> None:
    """More than 100,000 events (Thompson, killed and uniform decisions, leads,
    refusals, duplicates): identical, and the journal keeps no email in clear."""
    data = tmp_path / "data"
    data.mkdir()
    asyncio.run(_build(data, 7_400, seed=21))
    with contextlib.closing(sqlite3.connect(data / "events.db")) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        decisions = conn.execute(
            "SELECT count(*) FROM events WHERE type = 'EdgeChosen'"
        ).fetchone()[0]
    assert events >= 100_000
    done = verify(data)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == (
        f"verified 7,400 conversations ({events:,} events, {decisions:,} decisions): identical"
    )
    blob = (data / "events.db").read_bytes()
    assert email_of(17).encode() not in blob and b"Visitor 17" not in blob
