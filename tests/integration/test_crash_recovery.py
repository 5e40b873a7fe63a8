"""kill -9 of the embedded server loses nothing: visitors resume exactly where they were."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from typing import Any

from schemas.events import decode_event
from services.conversation.state import ConversationState, fold
from tests.support.server import ServerProcess
from tests.support.visitor import Visitor, valid_answer


async def test_resume_after_kill9_continues_without_lost_or_repeated_messages(
    fresh_server: ServerProcess,
) -> None:
    """A conversation interrupted by kill -9 resumes on the restarted server seamlessly."""
    fresh_server.start()
    rng = random.Random(3)
    visitor = await Visitor.connect(fresh_server.ws_url)
    await visitor.start("insurance-quote")
    for _ in range(2):
        node = visitor.current()
        assert node is not None and node["kind"] == "question"
        await visitor.press(rng.choice(node["buttons"])["id"])
    seen = list(visitor.messages)
    fresh_server.kill9()
    with contextlib.suppress(Exception):
        await visitor.close()

    fresh_server.start()
    again = await Visitor.connect(fresh_server.ws_url)
    try:
        again.conversation_id = visitor.conversation_id
        again.messages, again.last_seq = list(seen), seen[-1]["seq"]
        frames = await again.resume(visitor.token, last_seq=visitor.last_seq)
        assert frames[0]["type"] == "session" and frames[0]["messages"] == 0
        assert frames[0]["ack"] == visitor.ack
        end = await again.play_to_end(rng)
        assert end["done"]
        seqs = [m["seq"] for m in again.messages]
        assert seqs == sorted(set(seqs))
    finally:
        await again.close()

    full = await Visitor.connect(fresh_server.ws_url)
    try:
        await full.resume(visitor.token, last_seq=0)
        assert full.messages[: len(seen)] == [
            {**m, "answer": full.messages[i]["answer"]} for i, m in enumerate(seen)
        ]
        assert [m["seq"] for m in full.messages] == [m["seq"] for m in again.messages]
    finally:
        await full.close()


async def _press_until_killed(ws_url: str, i: int, acked: dict[int, Any]) -> Visitor:
    visitor = await Visitor.connect(ws_url)
    await visitor.start(("solar-quote", "saas-demo", "insurance-quote")[i % 3])
    rng = random.Random(i)
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError, RuntimeError):
        while not visitor.current()["done"]:  # type: ignore[index]
            node = visitor.current()
            assert node is not None
            if node["kind"] == "question":
                await visitor.press(rng.choice(node["buttons"])["id"])
            elif node["kind"] == "input":  # insurance-quote's free-text question (flow v2)
                await visitor.answer(valid_answer(node["input"]))
            else:
                await visitor.lead({"name": "A", "email": f"v{i}@example.com", "consent": "true"})
            acked[i] = (visitor.ack, visitor.last_seq, visitor.token)
            await asyncio.sleep(0.05)
    return visitor


async def test_kill9_under_load_loses_nothing_acknowledged(fresh_server: ServerProcess) -> None:
    """Every reply a visitor received before kill -9 is in the log after restart, and
    every conversation's log is gap-free with unique deterministic ids."""
    fresh_server.start()
    acked: dict[int, Any] = {}
    tasks = [
        asyncio.create_task(_press_until_killed(fresh_server.ws_url, i, acked)) for i in range(30)
    ]
    await asyncio.sleep(0.3)
    fresh_server.kill9()
    visitors = await asyncio.gather(*tasks)
    interrupted = [v for v in visitors if v.messages and not v.messages[-1]["done"]]
    assert len(interrupted) >= 5, "the kill should interrupt conversations in flight"
    for v in visitors:
        with contextlib.suppress(Exception):
            await v.close()

    fresh_server.start()
    for i in range(len(visitors)):
        if i not in acked:
            continue
        ack, last_seq, token = acked[i]
        again = await Visitor.connect(fresh_server.ws_url)
        try:
            frames = await again.resume(token, last_seq=0)
            assert frames[0]["type"] == "session"
            assert frames[0]["ack"] >= ack, "an acknowledged command was lost"
            assert again.last_seq >= last_seq, "an acknowledged bot message was lost"
            await again.play_to_end(random.Random(i))
        finally:
            await again.close()

    with sqlite3.connect(fresh_server.data_dir / "events.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM events")]
        assert len(ids) == len(set(ids))
        for (cid,) in conn.execute("SELECT DISTINCT conversation_id FROM events").fetchall():
            bodies = [
                r[0]
                for r in conn.execute(
                    "SELECT body FROM events WHERE conversation_id = ? ORDER BY seq", (cid,)
                )
            ]
            state = fold(ConversationState(cid), [decode_event(b) for b in bodies])
            assert state.seq == len(bodies)
