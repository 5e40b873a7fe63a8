"""The embedded mode's read models, read API and ``leadflow replay`` on a real server."""

from __future__ import annotations

import os
import random
import sqlite3
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


ACME_KEY, GLOBEX_KEY = "acme-read-key-0123456789abcdef", "globex-read-key-0123456789abcdef"


def two_sites_on_one_flow(path: Path) -> Path:
    sites = {
        "sites": [
            {
                "id": site,
                "origins": ["http://localhost:*"],
                "flows": ["solar-quote"],
                "api_key_sha256": hash_api_key(key),
            }
            for site, key in (("acme", ACME_KEY), ("globex", GLOBEX_KEY))
        ]
    }
    path.write_bytes(orjson.dumps(sites))  # JSON is YAML
    return path


async def play_site(server: ServerProcess, site: str, seed: int) -> None:
    visitor = await Visitor.connect(server.ws_url)
    try:
        await visitor.start("solar-quote", site=site)
        await visitor.play_to_end(random.Random(seed))
    finally:
        await visitor.close()


def started(server: ServerProcess, key: str, site: str | None = None) -> tuple[str | None, int]:
    """Whose funnel of solar-quote ``key`` reads (``site_id``), and its conversations."""
    query = "" if site is None else f"?site={site}"
    status, body = get_json(f"{server.http_url}/api/v1/flows/solar-quote/funnel{query}", key)
    assert status == 200, body
    return body["site_id"], int(body["totals"]["started"])


def to_the_previous_layout(events_db: Path) -> None:
    """What a data directory of the previous version holds: no per-site counters
    and no recorded layout."""
    with sqlite3.connect(events_db) as conn:
        conn.execute("DELETE FROM rm_counters WHERE key LIKE 'site:%'")
        conn.execute("DELETE FROM rm_meta WHERE key LIKE 'layout:%'")


async def test_sites_sharing_a_flow_see_their_own_funnel_also_after_an_upgrade(
    tmp_path: Path,
) -> None:
    """A site's key reads only its own conversations of a flow both sites run; a
    data directory of the previous layout is rebuilt when the server starts."""
    env = {
        "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY),
        "LEADFLOW_SITES_FILE": str(two_sites_on_one_flow(tmp_path / "sites.yaml")),
    }
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        for n, site in enumerate(("acme", "acme", "globex")):
            await play_site(server, site, n)
        assert started(server, ACME_KEY) == ("acme", 2)
        assert started(server, GLOBEX_KEY) == ("globex", 1)
        assert started(server, ADMIN_KEY) == (None, 3)
    finally:
        server.stop()

    to_the_previous_layout(server.data_dir / "events.db")
    leads = server.cli("leads", "acme")
    assert "earlier version" in leads.stderr

    server = ServerProcess(server.data_dir, env={**env, "LEADFLOW_LOG_LEVEL": "info"}).start()
    try:
        assert started(server, ACME_KEY) == ("acme", 2)
        assert started(server, GLOBEX_KEY) == ("globex", 1)
        assert started(server, ADMIN_KEY, "globex") == ("globex", 1)
        assert started(server, ADMIN_KEY) == (None, 3)
    finally:
        server.stop()
    with sqlite3.connect(server.data_dir / "events.db") as conn:
        current = conn.execute("SELECT value FROM rm_meta WHERE key = 'current'").fetchone()[0]
        layout = conn.execute(
            "SELECT value FROM rm_meta WHERE key = ?", (f"layout:{current}",)
        ).fetchone()
    assert current != "n1" and layout is not None
    assert server.cli("leads", "acme").stderr == ""
