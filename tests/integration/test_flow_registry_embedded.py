"""The flow registry and its admin API on the real ``leadflow serve``: publishing a
version over HTTP reaches new visitors without a restart while a visitor already
mid-conversation finishes on the version it started on; rollback; idempotent
publishing; kill -9 keeps the active version; bad input changes nothing."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from schemas.flow_limits import MAX_FLOW_BYTES
from services.catalog import EXAMPLE_FLOWS_DIR
from services.http_auth import hash_api_key, new_api_key
from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.visitor import Visitor

ADMIN_KEY, WRITER_KEY, READER_KEY = new_api_key(), new_api_key(), new_api_key()
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WRITER = {"Authorization": f"Bearer {WRITER_KEY}"}  # site "acme", write scope
READER = {"Authorization": f"Bearer {READER_KEY}"}  # site "globex", read only
FLOW = "solar-quote"
OLD_GREETING = "Hi! ☀️ Let's find out how much you could save with solar panels."
NEW_GREETING = "Hello from version two of the solar quote."


def sites_yaml() -> str:
    return f"""
sites:
  - id: demo
    origins: ["http://localhost:*", "http://127.0.0.1:*"]
  - id: acme
    origins: ["http://localhost:*"]
    api_key_sha256: "{hash_api_key(WRITER_KEY)}"
    api_key_scopes: [read, write]
  - id: globex
    origins: ["http://localhost:*"]
    flows: [saas-demo]
    api_key_sha256: "{hash_api_key(READER_KEY)}"
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    flows = tmp_path / "flows"
    shutil.copytree(EXAMPLE_FLOWS_DIR, flows)
    sites = tmp_path / "sites.yaml"
    sites.write_text(sites_yaml())
    env = {
        "LEADFLOW_FLOWS_DIR": str(flows),
        "LEADFLOW_SITES_FILE": str(sites),
        "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY),
        "LEADFLOW_DELIVERY": "off",
        "LEADFLOW_METRICS_PORT": str(free_port()),
    }
    proc = ServerProcess(tmp_path / "data", env=env).start()
    try:
        yield proc
    finally:
        proc.stop()


V1_QUESTIONS = {
    "roof": "Which way does your main roof face?",
    "bill": "Roughly how much is your monthly electricity bill?",
}


def solar_v2_yaml() -> str:
    """Version 2: a new greeting, and new texts for the questions after the first."""
    text = (EXAMPLE_FLOWS_DIR / "solar-quote.yaml").read_text()
    for question in V1_QUESTIONS.values():
        text = text.replace(question, f"{question} (v2)")
    return text.replace(
        "Hi! ☀️ Let's find out how much you could save with solar panels.", NEW_GREETING
    )


async def call(
    method: str,
    url: str,
    headers: dict[str, str],
    status: int,
    data: bytes | str | None = None,
    content_type: str = "application/yaml",
) -> Any:
    async with aiohttp.ClientSession() as http:
        sent = {**headers, "Content-Type": content_type} if data is not None else headers
        async with http.request(method, url, headers=sent, data=data) as response:
            body = await response.read()
            assert response.status == status, (response.status, body)
            return orjson.loads(body)


async def greeting(server: ServerProcess, site: str = "demo") -> str:
    visitor = await Visitor.connect(server.ws_url)
    try:
        frames = await visitor.start(FLOW, site=site)
        texts = [f["message"]["text"] for f in frames if f["type"] == "message"]
        return str(texts[0])
    finally:
        await visitor.close()


async def test_publish_reaches_new_visitors_while_a_started_one_finishes_on_its_version(
    server: ServerProcess,
) -> None:
    api = f"{server.http_url}/api/v1"
    listed = await call("GET", f"{api}/flows", ADMIN, 200)
    solar = next(f for f in listed["flows"] if f["flow_id"] == FLOW)
    assert solar == {"flow_id": FLOW, "versions": [1], "active_version": 1}  # seeded from files

    early = await Visitor.connect(server.ws_url)
    try:
        await early.start(FLOW)
        assert early.messages[0]["text"].startswith(OLD_GREETING)
        published = await call("POST", f"{api}/flows", ADMIN, 201, solar_v2_yaml())
        assert published["version"] == 2 and published["created"] is True
        assert published["active_for"] == ["*"] and published["published_by"] == "admin"
        # no restart: the API answered once the server served the new version
        assert (await greeting(server)).startswith(NEW_GREETING)

        await early.answer_inputs()  # the first name
        await early.press("house")
        asked = early.messages[-1]
        assert asked["text"] == V1_QUESTIONS[asked["node_id"]]  # the early visitor stays on v1
        versions = await call("GET", f"{api}/flows/{FLOW}/versions", ADMIN, 200)
        assert [v["version"] for v in versions["versions"]] == [1, 2]
    finally:
        await early.close()

    again = await call("POST", f"{api}/flows", ADMIN, 200, solar_v2_yaml())
    assert again["version"] == 2 and again["created"] is False  # idempotent by content
    stale = await call(
        "POST", f"{api}/flows", {**ADMIN, "If-Match": "1"}, 409, solar_v2_yaml().replace("two", "2")
    )
    assert stale["error"]["code"] == "conflict"

    changes = await call("GET", f"{api}/flows/{FLOW}/diff?from=1&to=2", ADMIN, 200)
    assert changes["nodes"]["changed"] == ["bill", "roof", "welcome"]
    assert changes["edges"]["added"] == changes["edges"]["removed"] == []

    await call(
        "PUT", f"{api}/flows/{FLOW}/active", ADMIN, 200, b'{"version": 1}', "application/json"
    )
    assert (await greeting(server)).startswith(OLD_GREETING)  # rolled back for every site


async def test_the_active_version_survives_kill_9_and_a_restart(server: ServerProcess) -> None:
    api = f"{server.http_url}/api/v1"
    await call("POST", f"{api}/flows", ADMIN, 201, solar_v2_yaml())
    await call(
        "PUT", f"{api}/flows/{FLOW}/active", ADMIN, 200, b'{"version": 1}', "application/json"
    )
    server.kill9()
    server.start()
    assert (await greeting(server)).startswith(OLD_GREETING)  # the files did not re-activate v2
    listed = await call("GET", f"{server.http_url}/api/v1/flows", ADMIN, 200)
    assert next(f for f in listed["flows"] if f["flow_id"] == FLOW)["versions"] == [1, 2]


async def test_a_site_key_with_write_scope_changes_its_own_site_only(server: ServerProcess) -> None:
    api = f"{server.http_url}/api/v1"
    published = await call("POST", f"{api}/flows", WRITER, 201, solar_v2_yaml())
    assert published["active_for"] == ["acme"] and published["published_by"] == "site:acme"
    assert (await greeting(server, "acme")).startswith(NEW_GREETING)
    assert (await greeting(server, "demo")).startswith(OLD_GREETING)
    refused = await call(
        "PUT",
        f"{api}/flows/{FLOW}/active",
        WRITER,
        403,
        b'{"version": 2, "site": "demo"}',
        "application/json",
    )
    assert refused["error"]["code"] == "forbidden"
    await call("POST", f"{api}/flows", READER, 403, solar_v2_yaml())  # no write scope
    await call("GET", f"{api}/flows", {}, 401)


async def test_bad_input_gets_a_clear_error_and_changes_nothing(server: ServerProcess) -> None:
    api = f"{server.http_url}/api/v1"
    broken = solar_v2_yaml().replace("next: first_name", "next: nowhere", 1)
    invalid = await call("POST", f"{api}/flows", ADMIN, 422, broken)
    errors = invalid["error"]["errors"]
    assert {"file": "flow.yaml", "node": "welcome", "field": "next"} in [
        {k: e[k] for k in ("file", "node", "field")} for e in errors
    ]
    same = await call("POST", f"{api}/flows/validate", ADMIN, 422, broken)
    assert same["error"]["errors"] == errors  # validate says what publish says
    ok = await call("POST", f"{api}/flows/validate", ADMIN, 200, solar_v2_yaml())
    assert ok == {"valid": True, "flow_id": FLOW, "version": 1}
    await call("POST", f"{api}/flows", ADMIN, 413, b"a" * (MAX_FLOW_BYTES + 1))
    bomb = "a: &x [1]\nb: [*x, *x]\n"
    refused = await call("POST", f"{api}/flows", ADMIN, 422, bomb)
    assert "anchor" in refused["error"]["errors"][0]["message"].lower()
    await call("POST", f"{api}/flows", ADMIN, 422, b"\xff\xfe", "application/json")
    await call(
        "PUT", f"{api}/flows/{FLOW}/active", ADMIN, 404, b'{"version": 7}', "application/json"
    )
    await call(
        "PUT",
        f"{api}/flows/{FLOW}/active",
        ADMIN,
        404,
        b'{"version": 1, "site": "nope"}',
        "application/json",
    )
    await call("PUT", f"{api}/flows/{FLOW}/active", ADMIN, 400, b"[1]", "application/json")
    await call("GET", f"{api}/flows/{FLOW}/diff?from=1&to=x", ADMIN, 400)
    await call("GET", f"{api}/flows/nope/versions", ADMIN, 404)
    await call("GET", f"{api}/flows/{FLOW}/versions", READER, 403)  # no write scope
    listed = await call("GET", f"{api}/flows", ADMIN, 200)
    assert next(f for f in listed["flows"] if f["flow_id"] == FLOW)["versions"] == [1]


async def test_replay_verify_passes_on_a_log_spanning_three_versions(server: ServerProcess) -> None:
    """Conversations on v1, v2 and v3, one started on v1 and finished on it after
    v2 and v3 were published: the verifier takes every version from the registry
    (the flow files hold only v1, with other content than v2 and v3)."""
    api = f"{server.http_url}/api/v1"
    rng = random.Random(18)
    straddling = await Visitor.connect(server.ws_url)
    try:
        await straddling.start(FLOW)
        await play(server, rng)
        await call("POST", f"{api}/flows", ADMIN, 201, solar_v2_yaml())
        await play(server, rng)
        await call("POST", f"{api}/flows", ADMIN, 201, solar_v2_yaml().replace("(v2)", "(v3)"))
        await play(server, rng)
        end = await straddling.play_to_end(rng)
        assert end["done"]
    finally:
        await straddling.close()
    done = await asyncio.to_thread(server.cli, "replay", "--verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 conversations" in done.stdout, done.stdout


async def play(server: ServerProcess, rng: random.Random) -> None:
    visitor = await Visitor.connect(server.ws_url)
    try:
        await visitor.start(FLOW)
        await visitor.play_to_end(rng)
    finally:
        await visitor.close()


def leadflow(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_API_KEY"}
    if key is not None:
        env["LEADFLOW_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def greeting_within(server: ServerProcess, prefix: str, seconds: float = 1.0) -> float:
    """How long until a new visitor is greeted with ``prefix`` (fails after ``seconds``)."""
    started = time.monotonic()
    while True:
        if (await greeting(server)).startswith(prefix):
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, f"not served within {seconds} s"
        await asyncio.sleep(0.05)


async def test_the_cli_publishes_lists_diffs_and_rolls_back_locally_and_remotely(
    server: ServerProcess, tmp_path: Path
) -> None:
    draft = tmp_path / "solar-v2.yaml"
    draft.write_text(solar_v2_yaml())
    data = ("--data-dir", str(server.data_dir))
    done = await asyncio.to_thread(leadflow, "flows", "publish", str(draft), *data)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{FLOW}: published v2, active for every site"
    await greeting_within(server, NEW_GREETING)  # the running server follows the table
    again = await asyncio.to_thread(leadflow, "flows", "publish", str(draft), *data)
    assert "unchanged: this content already is v2" in again.stdout
    listed = await asyncio.to_thread(leadflow, "flows", "list", *data)
    assert f"{FLOW}: active v2 (versions 1, 2)" in listed.stdout.splitlines()
    changes = await asyncio.to_thread(leadflow, "flows", "diff", FLOW, "1", "2", *data)
    assert "  ~ node welcome" in changes.stdout.splitlines()
    draft3 = tmp_path / "solar-v3.yaml"
    draft3.write_text(solar_v2_yaml().replace("(v2)", "(v3)"))
    stale = await asyncio.to_thread(
        leadflow, "flows", "publish", str(draft3), "--if-match", "1", *data
    )
    assert stale.returncode == 1 and "the latest version is 2" in stale.stderr
    url = ("--url", server.http_url)
    back = await asyncio.to_thread(leadflow, "flows", "activate", FLOW, "1", *url, key=ADMIN_KEY)
    assert back.returncode == 0, back.stderr
    assert (await greeting(server)).startswith(OLD_GREETING)
    remote = await asyncio.to_thread(leadflow, "flows", "list", *url, key=ADMIN_KEY)
    assert f"{FLOW}: active v1 (versions 1, 2)" in remote.stdout.splitlines()
    denied = await asyncio.to_thread(leadflow, "flows", "publish", str(draft), *url, key=READER_KEY)
    assert denied.returncode == 1 and "403" in denied.stderr and READER_KEY not in denied.stderr
    nokey = await asyncio.to_thread(leadflow, "flows", "list", *url)
    assert nokey.returncode == 2 and "LEADFLOW_API_KEY" in nokey.stderr
    missing = await asyncio.to_thread(leadflow, "flows", "activate", FLOW, "9", *data)
    assert missing.returncode == 1 and "has no version 9" in missing.stderr


async def test_kill_9_during_publishes_leaves_no_half_state(server: ServerProcess) -> None:
    """Publishes (each a new version, activated with it) in flight when the server
    is killed: after a restart every version in the registry is whole and the
    active version is the latest one, never a version published but not activated."""
    api = f"{server.http_url}/api/v1"

    async def publish_forever() -> None:
        n = 0
        async with aiohttp.ClientSession() as http:
            while True:
                n += 1
                body = solar_v2_yaml().replace("(v2)", f"(v{n + 1})")
                try:
                    async with http.post(
                        f"{api}/flows", data=body, headers=ADMIN, timeout=aiohttp.ClientTimeout(5)
                    ) as response:
                        await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    return  # the server is gone

    publishing = [asyncio.create_task(publish_forever()) for _ in range(3)]
    await asyncio.sleep(random.Random(9).uniform(0.3, 0.8))
    server.kill9()
    await asyncio.gather(*publishing)
    server.start()
    listed = await call("GET", f"{api}/flows", ADMIN, 200)
    solar = next(f for f in listed["flows"] if f["flow_id"] == FLOW)
    assert len(solar["versions"]) > 2, "no publish landed before the kill"
    assert solar["versions"] == list(range(1, len(solar["versions"]) + 1))
    assert solar["active_version"] == solar["versions"][-1]
    versions = await call("GET", f"{api}/flows/{FLOW}/versions", ADMIN, 200)
    assert versions["versions"][-1]["active_for"] == ["*"]
    latest = versions["versions"][-1]["version"]
    served = await call("GET", f"{api}/flows/{FLOW}/versions/{latest}", ADMIN, 200)
    question = next(n for n in served["document"]["nodes"] if n["id"] == "roof")["text"]["en"]
    assert (await greeting(server)).startswith(NEW_GREETING) and question.endswith(")")
