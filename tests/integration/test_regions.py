"""Two regions on this box (issue 20), each a ``leadflow serve`` of its own: a
conversation started in region A and resumed at region B is sent home (a
``moved`` frame naming A's socket) and finishes there with nothing lost or
repeated; region A killed (kill -9) while its visitor is mid-conversation loses
nothing acknowledged: the visitor comes back through B, is sent home, and
goes on once A is back."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from tests.support.server import ServerProcess
from tests.support.timer_flows import logged_events
from tests.support.visitor import Visitor

SECRET = "two-regions-share-this-resume-secret"


def regions(tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    a, b = ServerProcess(tmp_path / "a"), ServerProcess(tmp_path / "b")
    urls = f"a=ws://127.0.0.1:{a.port}/ws,b=ws://127.0.0.1:{b.port}/ws"
    for server, name in ((a, "a"), (b, "b")):
        server.env.update(
            LEADFLOW_REGION=name, LEADFLOW_REGION_URLS=urls, LEADFLOW_RESUME_SECRET=SECRET
        )
    return a, b


async def resume_via(ws_url: str, visitor: Visitor) -> Visitor:
    """Resume ``visitor``'s conversation at ``ws_url``, following a ``moved`` frame."""
    again = await Visitor.connect(ws_url)
    await again.send({"type": "resume", "token": visitor.token, "last_seq": visitor.last_seq})
    first = await again.recv()
    if first["type"] == "moved":
        await again.close()
        again = await Visitor.connect(first["url"])
        await again.send({"type": "resume", "token": visitor.token, "last_seq": visitor.last_seq})
        first = await again.recv()
    assert first["type"] == "session", first
    for _ in range(first["messages"]):
        await again.recv()
    again.messages = list(visitor.messages) + again.messages
    again.last_seq = max(m["seq"] for m in again.messages)
    return again


async def test_a_conversation_resumed_in_the_other_region_is_sent_home_and_finishes(
    tmp_path: Path,
) -> None:
    a, b = regions(tmp_path)
    try:
        a.start()
        b.start()
        visitor = await Visitor.connect(a.ws_url)
        await visitor.start("saas-demo")
        assert visitor.conversation_id.startswith("a~")
        rng = random.Random(5)
        node = visitor.current()
        assert node is not None and node["kind"] == "question"
        await visitor.press(rng.choice(node["buttons"])["id"])
        await visitor.close()
        probe = await Visitor.connect(b.ws_url)
        await probe.send({"type": "resume", "token": visitor.token, "last_seq": 0})
        assert await probe.recv() == {
            "type": "moved", "v": 1, "region": "a", "url": a.ws_url,
        }  # fmt: skip
        await probe.close()
        home = await resume_via(b.ws_url, visitor)
        try:
            end = await home.play_to_end(rng)
            assert end["done"]
            seqs = [m["seq"] for m in home.messages]
            assert seqs == sorted(set(seqs))  # nothing lost or shown twice
        finally:
            await home.close()
        assert logged_events(b.data_dir / "events.db", visitor.conversation_id) == []
        verified = a.cli("replay", "--verify")
        assert verified.returncode == 0 and "identical" in verified.stdout, verified.stdout
    finally:
        a.stop()
        b.stop()


async def test_a_killed_region_loses_nothing_acknowledged(tmp_path: Path) -> None:
    a, b = regions(tmp_path)
    try:
        a.start()
        b.start()
        visitor = await Visitor.connect(a.ws_url)
        await visitor.start("saas-demo")
        rng = random.Random(9)
        for _ in range(2):
            node = visitor.current()
            assert node is not None
            if node["kind"] != "question":
                break
            await visitor.press(rng.choice(node["buttons"])["id"])
        acknowledged = list(visitor.messages)
        a.kill9()
        with contextlib.suppress(Exception):
            await visitor.close()
        a.start()
        home = await resume_via(b.ws_url, visitor)  # through the other region, sent home
        try:
            full = await Visitor.connect(a.ws_url)
            try:
                await full.resume(visitor.token, last_seq=0)
                shown = [(m["seq"], m["node_id"]) for m in full.messages]
                assert shown[: len(acknowledged)] == [
                    (m["seq"], m["node_id"]) for m in acknowledged
                ]
            finally:
                await full.close()
            assert (await home.play_to_end(rng))["done"]
        finally:
            await home.close()
    finally:
        a.stop()
        b.stop()
