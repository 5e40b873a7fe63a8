"""Durable timers in the embedded mode (issue 19, item 3), through the real
WebSocket protocol of ``leadflow serve``: a silent visitor is nudged on their
open socket once; after kill -9 the timers are rebuilt from the SQLite log and
fire once each (the nudge and the abandonment), none of them twice."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from schemas.events import ConversationAbandoned, VisitorNudged
from tests.support.server import ServerProcess
from tests.support.timer_flows import NUDGE_TEXT, logged_events, write_flows
from tests.support.visitor import Visitor


def _serve(fresh_server: ServerProcess, tmp_path: Path) -> ServerProcess:
    fresh_server.env["LEADFLOW_FLOWS_DIR"] = str(write_flows(tmp_path / "flows"))
    return fresh_server.start()


async def test_a_silent_visitor_is_nudged_once_on_the_open_socket(
    fresh_server: ServerProcess, tmp_path: Path
) -> None:
    server = _serve(fresh_server, tmp_path)
    visitor = await Visitor.connect(server.ws_url)
    try:
        started = time.monotonic()
        await visitor.start("nudger")
        assert visitor.current() is not None and visitor.current()["kind"] == "question"  # type: ignore[index]
        frame = await visitor.recv(wait=15)
        waited = time.monotonic() - started
        assert frame["type"] == "message", frame
        nudge = frame["message"]
        assert (nudge["kind"], nudge["node_id"], nudge["text"]) == ("message", "colour", NUDGE_TEXT)
        assert 4.5 <= waited < 12, waited
        assert frame["ack"] == 1  # a timer uses no command seq: the visitor's next is 2
        end = await visitor.press("red")
        assert end[-1]["message"]["done"] is True
    finally:
        await visitor.close()
    events = logged_events(server.data_dir / "events.db", visitor.conversation_id)
    assert sum(isinstance(e, VisitorNudged) for e in events) == 1
    assert not any(isinstance(e, ConversationAbandoned) for e in events)  # it ended first


async def test_timers_fire_once_after_kill9_of_the_server(
    fresh_server: ServerProcess, tmp_path: Path
) -> None:
    server = _serve(fresh_server, tmp_path)
    nudged = await Visitor.connect(server.ws_url)  # nudged before the kill
    await nudged.start("nudger")
    await nudged.recv(wait=15)
    pending = await Visitor.connect(server.ws_url)  # its timers are pending at the kill
    await pending.start("nudger")
    started = time.monotonic()
    server.kill9()
    for visitor in (nudged, pending):
        with contextlib.suppress(Exception):
            await visitor.close()
    server.start()
    db = server.data_dir / "events.db"
    deadline = started + 30
    while time.monotonic() < deadline:
        events = logged_events(db, pending.conversation_id)
        if any(isinstance(e, ConversationAbandoned) for e in events):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # anything fired twice would be in by now
    for conversation in (nudged.conversation_id, pending.conversation_id):
        events = logged_events(db, conversation)
        kinds = [type(e).__name__ for e in events]
        assert kinds.count("VisitorNudged") == 1, kinds
        assert kinds.count("ConversationAbandoned") == 1, kinds
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    verified = server.cli("replay", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "identical" in verified.stdout
    again = await Visitor.connect(server.ws_url)
    try:
        frames = await again.resume(pending.token, last_seq=0)
        texts = [f["message"]["text"] for f in frames if f["type"] == "message"]
        assert texts.count(NUDGE_TEXT) == 1
        assert (await again.press("blue"))[-1]["message"]["done"] is True  # goes on after it
    finally:
        await again.close()
