"""Flow format v2 on the real ``leadflow serve`` over the WebSocket: a variable in
a greeting, a condition on an earlier answer, a free-text question (a bad value
refused as ``invalid_answer``, then a good one), the personal answer never in
clear in the data directory or the logs, ``replay --verify`` identical, and an
erased key rendering the fallback on resume."""

from __future__ import annotations

from pathlib import Path

from tests.support.server import ServerProcess
from tests.support.visitor import Visitor
from tests.unit.flows_v2 import ROOFER_YAML

SECRET_NAME = "Zoë Quuxenfeld"
SECRET_EMAIL = "quuxenfeld-v2@example.org"


def _server(tmp_path: Path) -> ServerProcess:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "roofer.yaml").write_text(ROOFER_YAML, "utf-8")
    return ServerProcess(
        tmp_path / "data", args=("--flows", str(flows)), env={"LEADFLOW_LOG_LEVEL": "debug"}
    )


def _texts(frames: list[dict[str, object]]) -> list[str]:
    return [f["message"]["text"] for f in frames if f["type"] == "message"]  # type: ignore[index]


async def test_variables_conditions_and_free_text_through_serve(tmp_path: Path) -> None:
    server = _server(tmp_path).start()
    try:
        visitor = await Visitor.connect(server.ws_url)
        try:
            start = await visitor.start("roofer")
            ask = start[-1]["message"]
            assert ask["kind"] == "input" and ask["input"]["max_length"] == 40
            greeted = await visitor.answer(SECRET_NAME)
            hello, roof = (f["message"] for f in greeted)
            assert hello["text"].startswith(f"Nice to meet you, {SECRET_NAME}!")
            assert hello["image"] == {"src": "https://example.com/roof.png", "alt": "A tiled roof"}
            assert roof["text"] == f"What kind of roof do you have, {SECRET_NAME}?"
            size = (await visitor.press("flat"))[-1]["message"]
            assert size["kind"] == "input" and size["input"]["type"] == "number"
            refused = (await visitor.answer("lots"))[-1]
            assert refused["type"] == "error" and refused["code"] == "invalid_answer"
            assert refused["retryable"] is True and "lots" not in refused["message"]
            branched = await visitor.answer("150")
            assert _texts(branched)[0] == "A big flat roof (150 m²)! We love those."
            end = await visitor.lead({"email": SECRET_EMAIL, "consent": "true"})
            assert _texts(end) == [f"Thanks {SECRET_NAME}, we'll write to {SECRET_EMAIL}."]
            cid, token = visitor.conversation_id, visitor.token
        finally:
            await visitor.close()

        again = await Visitor.connect(server.ws_url)
        try:
            resumed = [f["message"] for f in (await again.resume(token, 0))[1:]]
            assert resumed[0]["answer"] == SECRET_NAME  # opened in memory for its visitor
            assert resumed[1]["text"].startswith(f"Nice to meet you, {SECRET_NAME}!")
        finally:
            await again.close()
    finally:
        assert server.proc is not None
        server.proc.terminate()
        out, err = server.proc.communicate(timeout=30)
    logs = out + err
    assert b"Quuxenfeld" not in logs and "Zoë".encode() not in logs
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"Quuxenfeld" not in data, path
            assert b"quuxenfeld-v2" not in data, path
    verified = server.cli("replay", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Quuxenfeld" not in verified.stdout + verified.stderr
    assert verified.stdout.startswith("verified 1 conversation"), verified.stdout
    assert verified.stdout.rstrip().endswith("): identical"), verified.stdout

    erased_server = _server_again(tmp_path)
    try:
        erased = erased_server.cli("erase", cid)
        assert erased.returncode == 0, erased.stderr
        erased_server.start()
        late = await Visitor.connect(erased_server.ws_url)
        try:
            resumed = [f["message"] for f in (await late.resume(token, 0))[1:]]
            assert resumed[1]["text"].startswith("Nice to meet you, there!")
            assert resumed[0]["answer"] == "Answer sent"
        finally:
            await late.close()
    finally:
        erased_server.stop()


def _server_again(tmp_path: Path) -> ServerProcess:
    """The same data directory (its resume secret and keys) and flows, a new process."""
    return ServerProcess(tmp_path / "data", args=("--flows", str(tmp_path / "flows")))
