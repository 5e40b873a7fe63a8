"""Issue 19's "done when" through the real WebSocket protocol, in both modes:
the tour flow (tests/support/tour_flow.py) played by a German visitor on
``leadflow serve`` and on gateways, Kafka and a processor gives the very same
transcript: greeted by name, nudged when silent, an answer changed, a branch
on that earlier answer after a free-text question, a link, the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.distributed import Cluster
from tests.support.server import ServerProcess
from tests.support.tour_flow import write_tour
from tests.support.visitor import Visitor

EXPECTED = [
    ("name", "input", "Hallo! Wie heißen Sie?"),
    ("home", "question", "Freut mich, Jürgen! Ein Haus oder eine Wohnung?"),
    ("rooms", "input", "Wie viele Zimmer?"),
    ("rooms", "message", "Noch da, Jürgen?"),
    ("home", "question", "Freut mich, Jürgen! Ein Haus oder eine Wohnung?"),
    ("rooms", "input", "Wie viele Zimmer?"),
    (
        "flat_guide",
        "message",
        "3 Zimmer in einer Wohnung: Lesen Sie [unseren Wohnungs-Ratgeber](https://example.com/wohnung).",
    ),
    ("bye", "end", "Danke, Jürgen!"),
]


async def tour(ws_url: str) -> list[tuple[str, str, str]]:
    visitor = await Visitor.connect(ws_url)
    try:
        await visitor.start("tour", locale="de-DE")
        await visitor.answer("Jürgen")
        await visitor.press("house")
        nudge = await visitor.recv(wait=20)
        assert nudge["type"] == "message" and nudge["message"]["kind"] == "message", nudge
        await visitor.send({"type": "back", "seq": visitor.ack + 1, "node": "rooms"})
        await visitor.until_reply()
        await visitor.press("flat")
        frames: list[dict[str, Any]] = await visitor.answer("3")
        assert frames[-1]["message"]["done"] is True
        return [(m["node_id"], m["kind"], m["text"]) for m in visitor.messages]
    finally:
        await visitor.close()


async def test_the_tour_is_the_same_in_both_modes(
    fresh_server: ServerProcess, cluster: Cluster, tmp_path: Path
) -> None:
    flows = write_tour(tmp_path / "flows")
    fresh_server.env["LEADFLOW_FLOWS_DIR"] = str(flows)
    embedded = await tour(fresh_server.start().ws_url)
    assert embedded == EXPECTED
    processor, gateway = cluster.processor(), cluster.gateway(0)
    for service in (processor, gateway):
        service.env["LEADFLOW_FLOWS_DIR"] = str(flows)
        service.start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    assert await tour(gateway.ws_url) == embedded
