"""The embedded mode's read models, read API and ``leadflow replay`` on a real server."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import orjson

from services.http_auth import hash_api_key
from tests.support.http import get_json
from tests.support.server import ROOT, ServerProcess
from tests.support.visitor import Visitor

ADMIN_KEY = "embedded-admin-key-0123456789abcdef"


def replay(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "replay", "--data-dir", str(data_dir), *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def play(server: ServerProcess, flow: str, seed: int) -> str:
    visitor = await Visitor.connect(server.ws_url)
    try:
        await visitor.start(flow)
        await visitor.play_to_end(random.Random(seed))
        return visitor.conversation_id
    finally:
        await visitor.close()


async def test_read_api_and_replay_on_a_live_embedded_server(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data", env={"LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY)}
    ).start()
    try:
        first = await play(server, "solar-quote", 1)
        api = f"{server.http_url}/api/v1"
        assert get_json(f"{api}/conversations/{first}")[0] == 401
        assert get_json(f"{api}/conversations/{first}", "wrong-key")[0] == 401
        status, body = get_json(f"{api}/conversations/{first}", ADMIN_KEY)
        assert status == 200
        assert orjson.dumps(body).count(b'"completed"') >= 1
        status, funnel = get_json(f"{api}/flows/solar-quote/funnel", ADMIN_KEY)
        assert status == 200 and orjson.dumps(funnel).count(b'"welcome"') >= 1

        # rebuild while the server keeps serving, then keep playing
        done = replay(server.data_dir)
        assert done.returncode == 0, done.stderr
        assert "replayed" in done.stdout and "replay:" in done.stderr
        second = await play(server, "saas-demo", 2)
        for cid in (first, second):
            status, body = get_json(f"{api}/conversations/{cid}", ADMIN_KEY)
            assert status == 200, cid
    finally:
        server.stop()


def test_replay_without_a_log_is_a_clear_error(tmp_path: Path) -> None:
    done = replay(tmp_path / "nothing-here")
    assert done.returncode == 2
    assert "no event log" in done.stderr
