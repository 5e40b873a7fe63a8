"""A visitor that resets its connection during the WebSocket handshake (a
client's timeout in a reconnect storm) leaves nothing in the gateway's log: the
upgrade's response cannot be written, and that is no error of the server's. The
gateway goes on serving. (The 100k failover logged a traceback for each.)"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT, free_port, wait_ready
from tests.support.visitor import Visitor

RESETS = 600  # each races the server's 101: some of them land inside ws.prepare


def upgrade_then_reset(port: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Origin: http://localhost\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        sock.sendall(request)


async def a_visitor_starts(port: int) -> None:
    visitor = await Visitor.connect(f"ws://127.0.0.1:{port}/ws")
    try:
        messages = await visitor.start("solar-quote")
        assert messages and visitor.conversation_id
    finally:
        await visitor.close()


def test_resets_during_the_handshake_log_nothing_and_serving_goes_on(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"  # a file, not a pipe: nothing can block the server
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            cwd=ROOT,
            env={**os.environ, "LEADFLOW_LOG_LEVEL": "info",
                 "LEADFLOW_SHUTDOWN_DRAIN_SECONDS": "0"},
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )  # fmt: skip
        try:
            wait_ready(port)
            for _ in range(RESETS):
                upgrade_then_reset(port)
            asyncio.run(a_visitor_starts(port))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    log = log_path.read_text()
    assert "Traceback" not in log and '"level":"error"' not in log, log[-3000:]
