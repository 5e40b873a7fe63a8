"""The SQLite read models: projected in the log's transaction, idempotent on replay."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from policy.uniform import UniformPolicy
from projector.sqlite_store import SCHEMA, SqliteReadModel, project_events
from schemas.commands import PressButton, StartConversation, SubmitLead
from schemas.events import Event
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.conversation.service import ConversationService
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.fakes import InMemoryKeyStore

LEAD = {"name": "Ann", "email": "ann@example.com", "consent": "true"}


async def _play(service: ConversationService, cid: str, seed: int) -> None:
    rng = random.Random(seed)
    reply = await service.handle(
        StartConversation(conversation_id=cid, seq=1, at=1.0, flow_id="saas-demo", site_id="s")
    )
    seq = 1
    while not reply.messages[-1].done:
        node = reply.messages[-1]
        seq += 1
        if node.kind == "question":
            reply = await service.handle(
                PressButton(
                    conversation_id=cid,
                    seq=seq,
                    at=float(seq),
                    node_id=node.node_id,
                    button_id=rng.choice(node.buttons).id,
                )
            )
        else:
            reply = await service.handle(
                SubmitLead(
                    conversation_id=cid, seq=seq, at=float(seq), node_id=node.node_id, fields=LEAD
                )
            )


def _dump(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return [
            *conn.execute("SELECT * FROM conversations ORDER BY conversation_id"),
            *conn.execute("SELECT * FROM leads ORDER BY conversation_id"),
        ]


async def test_read_models_follow_the_log_and_ignore_replays(tmp_path: Path) -> None:
    """Views are written with the events; re-applying every logged event changes nothing."""
    path = tmp_path / "events.db"
    log = SqliteEventLog(path, projection=project_events, projection_schema=SCHEMA)
    log.start()
    readmodel = SqliteReadModel(path)
    readmodel.start()
    try:
        catalog = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)
        service = ConversationService(log, InMemoryKeyStore(), catalog, UniformPolicy())
        for i in range(12):
            await _play(service, f"c{i}", seed=i)
        view = await readmodel.conversation("c3")
        assert view is not None and view.status == "completed"
        assert view.last_seq == len(await log.read_conversation("c3"))
        before = _dump(path)
        events: list[Event] = [logged.event for logged in await log.read_after(0, 10_000)]
        await log.append(events)  # at-least-once redelivery of the whole log
        with sqlite3.connect(path) as conn:
            project_events(conn, events)  # and a replay straight into the projection
        assert _dump(path) == before
    finally:
        readmodel.close()
        log.close()
