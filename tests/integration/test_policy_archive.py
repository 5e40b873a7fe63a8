"""The compact snapshot archive on a real embedded log (issue 16, item 6): decisions made
under online updates verify bit for bit (``leadflow replay --verify``) while the
archive holds only the updates' compact form; ``leadflow policy archive prune`` keeps
every fit and deletes old updates, after which their decisions are unverifiable (the
documented caveat), not divergent."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

from app.embedded import EmbeddedLearning
from policy.archive import is_compact
from policy.flow_snapshots import decision_points
from policy.online import OnlineLearner
from policy.online_config import Outcome
from policy.settings import PolicySettings
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.conversation.service import ConversationService
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_keystore import SqliteKeyStore
from tests.support.journaled_traffic import play
from tests.support.server import ROOT
from tests.support.verify_snapshots import latest, snapshot

FIT = "solar-quote@1#20251126T000000.000Z"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def learner_for(flow_id: str, seed: int) -> OnlineLearner:
    """An online learner of the flow that learnt from outcomes with earlier answers."""
    flow = latest(flow_id)
    points = decision_points(flow)
    learner = OnlineLearner(flow.id, flow.version, points)
    rng = random.Random(seed)
    batch = []
    for i in range(600):
        (node, button), candidates = rng.choice(sorted(points.items()))
        answers = (("q0", rng.choice(["a", "b", "c"])),)
        edge = rng.choice(candidates)
        success = rng.random() < (0.3 if edge == candidates[0] else 0.1)
        batch.append(Outcome(f"o{i}", node, button, edge, rng.randrange(6), answers, success))
    learner.observe(batch)
    return learner


async def build(data_dir: Path) -> None:
    """Conversations decided under a fit, then under three online updates of it."""
    catalog = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)
    log = SqliteEventLog(data_dir / "events.db")
    keys = SqliteKeyStore(data_dir / "keys.db")
    log.start()
    keys.start()
    try:
        learning = EmbeddedLearning(PolicySettings(), catalog, log)
        await learning._install(snapshot(latest("solar-quote"), FIT, seed=1, created_at=100.0))
        service = ConversationService(log, keys, catalog, learning.policy)
        await play(service, 40, seed=1, flows=("solar-quote",))
        learner = learner_for("solar-quote", 2)
        for n in (1, 2, 3):
            update = learner.snapshot(f"{FIT}.{n}", 100.0 + n)
            await learning._install(update)
            await play(
                service, 40, seed=10 + n, prefix=f"u{n}", t0=1_800_000_000.0 + 1000 * n,
                flows=("solar-quote",),
            )  # fmt: skip
    finally:
        keys.close()
        log.close()


def archive_rows(data_dir: Path) -> dict[str, bytes]:
    with sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT version, body FROM policy_snapshots").fetchall()
    return {v: bytes(b) for v, b in rows}


def decided_under(data_dir: Path) -> set[str]:
    from schemas.events import EdgeChosen, decode_event

    with sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT body FROM events WHERE type = 'EdgeChosen'").fetchall()
    events = [decode_event(body) for (body,) in rows]
    return {e.policy_version for e in events if isinstance(e, EdgeChosen)}


def test_decisions_under_compact_updates_verify_and_pruning_keeps_the_fits(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    asyncio.run(build(data_dir))
    versions = decided_under(data_dir)
    assert {f"{FIT}.1", f"{FIT}.2", f"{FIT}.3"} <= versions  # decisions under each update

    rows = archive_rows(data_dir)
    assert not is_compact(rows[FIT])  # a fit is archived whole
    assert all(is_compact(rows[f"{FIT}.{n}"]) for n in (1, 2, 3))
    done = cli("replay", "--verify", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "diverg" not in done.stdout.lower() or " 0 diverg" in done.stdout.lower()

    stats = cli("policy", "archive", "stats", "--data-dir", str(data_dir))
    assert stats.returncode == 0, stats.stderr
    assert "update compact        3" in stats.stdout and "fit    full           1" in stats.stdout

    dry = cli("policy", "archive", "prune", "--older-than", "1d", "--dry-run", "--data-dir",
              str(data_dir))  # fmt: skip
    assert dry.returncode == 0 and "would delete 3 archived updates" in dry.stdout
    assert len(archive_rows(data_dir)) == 4
    pruned = cli("policy", "archive", "prune", "--older-than", "1d", "--data-dir", str(data_dir))
    assert pruned.returncode == 0, pruned.stderr
    assert set(archive_rows(data_dir)) == {FIT}  # every fit kept
    after = cli("replay", "--verify", "--data-dir", str(data_dir))
    assert f"snapshot {FIT}.3 is not archived" in after.stdout  # unverifiable, reported
    assert "diverg" not in after.stdout.lower() or " 0 diverg" in after.stdout.lower()
