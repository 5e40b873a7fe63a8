"""Issue 14's hostile-input classes against a real ``leadflow serve``: numbers out
of range, forged or cross-site resume tokens, the idle timeout, handshake-level
refusals (origin, duplicate headers), slowloris, starts per socket, long
conversations and paged resumes, the demo page's security headers.

Each test that needs its own settings or reads the server's log starts its own
server; the rest share one per module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.server import ServerProcess
from tests.support.visitor import Visitor


def server_log(server: ServerProcess) -> list[dict[str, Any]]:
    """Stop ``server`` and return its JSON log records (stderr)."""
    assert server.proc is not None
    server.proc.terminate()
    _, err = server.proc.communicate(timeout=15)
    records = []
    for line in err.decode().splitlines():
        if line.startswith("{"):
            records.append(orjson.loads(line))
    return records


@pytest.fixture
def logged_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own that logs at info, for tests that read its log."""
    proc = ServerProcess(tmp_path / "data", env={"LEADFLOW_LOG_LEVEL": "info"})
    yield proc.start()
    proc.stop()


# --- numbers out of range ---------------------------------------------------


async def test_a_seq_of_2_63_is_a_malformed_frame_not_a_server_error(
    logged_server: ServerProcess,
) -> None:
    """Regression: press seq 2**63 was answered `unavailable` (retryable) and logged
    "event log append failed" at error level with a traceback (SQLite overflow)."""
    visitor = await Visitor.connect(logged_server.ws_url)
    try:
        await visitor.start("solar-quote")
        node = visitor.current()
        assert node is not None
        for seq in (2**63, 2**64 - 1, 2**31):
            frames = await visitor.press(node["buttons"][0]["id"], seq=seq)
            assert (frames[-1]["code"], frames[-1]["retryable"]) == ("malformed_frame", False)
        frames = await visitor.press(node["buttons"][0]["id"])
        assert frames[-1]["type"] == "message" and visitor.ack == 2
    finally:
        await visitor.close()
    records = server_log(logged_server)
    assert not [r for r in records if r["level"] in ("error", "critical")], records
    assert not [r for r in records if "append failed" in r["msg"]]
    await asyncio.sleep(0)
