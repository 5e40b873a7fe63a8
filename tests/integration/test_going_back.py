"""Going back through the real WebSocket protocol, in both modes: ``leadflow serve``
and a gateway, Kafka and a processor. A visitor changes answers (a button, a
free-text answer, across a decision point), a stale or impossible ``back`` is
refused with its seq used up, a resume shows the answers that stand, and
``replay --verify`` reproduces the log with its go-backs bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from policy.uniform import UniformPolicy
from schemas.commands import (
    AnswerQuestion,
    Command,
    GoBack,
    PressButton,
    StartConversation,
    VisitorContext,
)
from schemas.events import WentBack
from services.catalog import FlowCatalog
from tests.integration.test_verify_core import World, first_with, tamper, verify
from tests.support.distributed import Cluster
from tests.support.journaled_traffic import T0
from tests.support.server import ROOT, ServerProcess
from tests.support.visitor import Visitor
from tests.unit.flows_v2 import ROOFER_YAML, roofer


def _flows(tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "roofer.yaml").write_text(ROOFER_YAML, "utf-8")
    return flows


async def back(visitor: Visitor, node: str | None = None) -> list[dict[str, Any]]:
    current = visitor.current()
    assert current is not None
    await visitor.send({"type": "back", "seq": visitor.ack + 1, "node": node or current["node_id"]})
    return await visitor.until_reply()


def _nodes(frames: list[dict[str, Any]]) -> list[str]:
    return [f["message"]["node_id"] for f in frames if f["type"] == "message"]


async def change_answers(ws_url: str) -> tuple[str, str]:
    """Play roofer on mobile, changing answers on the way; (token, conversation id)."""
    visitor = await Visitor.connect(ws_url)
    try:
        await visitor.start("roofer", device="mobile")
        (nothing,) = await back(visitor)
        assert (nothing["type"], nothing["code"], nothing["ack"]) == ("error", "cannot_go_back", 2)
        assert _nodes(await visitor.answer("Eve")) == ["hello", "roof"]
        assert _nodes(await visitor.press("flat")) == ["size"]
        seen = visitor.last_seq
        (again,) = await back(visitor)
        roof = again["message"]
        assert (roof["node_id"], roof["kind"], roof["answer"]) == ("roof", "question", None)
        assert roof["seq"] > seen and again["ack"] == 5
        (stale,) = await back(visitor, node="size")
        assert (stale["code"], stale["ack"]) == ("wrong_node", 6)
        # mobile and pitched: a decision point between size and contact
        if _nodes(await visitor.press("pitched")) == ["size"]:
            await visitor.answer("150")
        assert visitor.current()["node_id"] == "contact"  # type: ignore[index]
        assert _nodes(await back(visitor)) == [visitor.messages[-1]["node_id"]]
        reopened = visitor.current()
        assert reopened is not None and reopened["node_id"] in ("roof", "size")
        if reopened["node_id"] == "size":  # the roof's answer is the one before it
            assert _nodes(await back(visitor)) == ["roof"]
        assert _nodes(await visitor.press("flat")) == ["size"]
        assert _nodes(await visitor.answer("40")) == ["small_flat", "contact"]
        end = await visitor.lead({"email": "eve-goes-back@example.org", "consent": "true"})
        assert end[-1]["message"]["done"] is True
        (ended,) = await back(visitor)
        assert ended["code"] == "cannot_go_back"
        token, cid = visitor.token, visitor.conversation_id
    finally:
        await visitor.close()
    again_visitor = await Visitor.connect(ws_url)
    try:
        transcript = [f["message"] for f in (await again_visitor.resume(token, 0))[1:]]
    finally:
        await again_visitor.close()
    answered = [(m["node_id"], m["answer"]) for m in transcript if m["answer"] is not None]
    assert answered[1:] == [("roof", "Flat"), ("size", "40"), ("contact", "Details sent")]
    assert [m["node_id"] for m in transcript].count("roof") == 1
    return token, cid


async def test_going_back_through_serve_and_replay_verify(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", args=("--flows", str(_flows(tmp_path)))).start()
    try:
        await change_answers(server.ws_url)
        await change_answers(server.ws_url)
    finally:
        assert server.proc is not None
        server.proc.terminate()
        server.proc.communicate(timeout=30)
    logged = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert logged.count(b'"WentBack"') >= 4 and b'"GoBack"' in logged  # events, journal
    verified = server.cli("replay", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verified 2 conversations"), verified.stdout
    assert verified.stdout.rstrip().endswith("): identical"), verified.stdout


def verify_kafka(cluster: Cluster, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "replay", "--verify", "--kafka"],
        cwd=ROOT,
        env={**os.environ, **cluster.env, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_going_back_through_kafka_and_replay_verify(cluster: Cluster, tmp_path: Path) -> None:
    env = {"LEADFLOW_FLOWS_DIR": str(_flows(tmp_path))}
    processor, gateway = cluster.processor(), cluster.gateway(0)
    for service in (processor, gateway):
        service.env.update(env)
        service.start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    await change_answers(gateway.ws_url)
    verified = verify_kafka(cluster, env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.rstrip().endswith("): identical"), verified.stdout


async def test_the_verifier_reproduces_go_backs_and_reports_a_forged_one() -> None:
    """The ConversationService's log with go-backs (refused ones too) replays bit
    for bit; a WentBack re-opening another step is the first divergence."""
    catalog = FlowCatalog([roofer()])
    world = World(UniformPolicy(), catalog)
    cid = "going-back-verify"
    commands: list[Command] = [
        StartConversation(
            conversation_id=cid,
            seq=1,
            at=T0,
            flow_id="roofer",
            site_id="demo",
            context=VisitorContext(device="mobile"),
        ),
        GoBack(conversation_id=cid, seq=2, at=T0 + 1, node_id="ask_name"),
        AnswerQuestion(conversation_id=cid, seq=3, at=T0 + 2, node_id="ask_name", value="Eve"),
        PressButton(conversation_id=cid, seq=4, at=T0 + 3, node_id="roof", button_id="pitched"),
    ]
    for command in commands:
        await world.service.handle(command)
    state = await world.service.state(cid)
    await world.service.handle(
        GoBack(conversation_id=cid, seq=5, at=T0 + 4, node_id=state.current_node or "")
    )
    await world.service.handle(
        PressButton(conversation_id=cid, seq=6, at=T0 + 5, node_id="roof", button_id="flat")
    )
    summary = await verify(world, catalog=catalog)
    assert summary.identical and summary.conversations == 1
    transcripts = await world.transcripts()
    index, went = first_with(transcripts, WentBack)
    assert isinstance(went, WentBack)
    tamper(transcripts, index, went.seq, withdrawn_seq=went.withdrawn_seq - 1)
    summary = await verify(world, transcripts, catalog=catalog)
    (divergence,) = summary.divergences
    assert (divergence.type, divergence.seq) == ("WentBack", went.seq)
    assert [f.name for f in divergence.fields] == ["withdrawn_seq"]
