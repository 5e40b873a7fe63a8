"""Preview sessions on the real ``leadflow serve`` (issue 18): a draft posted to
``/api/v1/flows/preview`` plays over the real WebSocket with its token, marked as a
preview: the funnel, the deliveries (a real webhook receiver) and the conversation
list show nothing of it while a real visitor's conversation shows; a forged token
is refused with a clear error frame and no traceback; publishing the draft
afterwards works; ``replay --verify`` passes on the log with the preview in it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from services.http_auth import hash_api_key, new_api_key
from tests.support.delivery_rig import (
    FLOW_ID,
    FLOW_YAML,
    SECRET,
    api_key,
    leave_lead,
    webhook,
    write_config,
)
from tests.support.receiver import Receiver
from tests.support.server import ROOT, ServerProcess
from tests.support.visitor import Visitor

ADMIN_KEY = new_api_key()
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DRAFT_QUESTION = "How big is it, in the draft?"
DRAFT_YAML = FLOW_YAML.replace("How big is it?", DRAFT_QUESTION)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = await Receiver(SECRET).start()
    yield hook
    await hook.stop()


async def call(
    method: str, url: str, headers: dict[str, str], status: int, data: str | None = None
) -> Any:
    async with aiohttp.ClientSession() as http:
        sent = {**headers, "Content-Type": "application/yaml"} if data is not None else headers
        async with http.request(method, url, headers=sent, data=data) as response:
            body = await response.read()
            assert response.status == status, (response.status, body)
            return orjson.loads(body)


async def until(check: Callable[[], Any], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def start_preview(server: ServerProcess, token: str) -> tuple[Visitor, list[dict[str, Any]]]:
    visitor = await Visitor.connect(server.ws_url)
    await visitor.send(
        {"type": "start", "site": "acme", "flow": FLOW_ID, "context": {}, "preview": token}
    )
    return visitor, await visitor.session_reply()


def verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "replay", "--verify", "--data-dir", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_a_preview_plays_the_draft_and_is_kept_out_of_funnels_and_deliveries(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = write_config(tmp_path, {"acme": [webhook("crm", f"{receiver.url}/hook")]})
    env["LEADFLOW_ADMIN_API_KEY_SHA256"] = hash_api_key(ADMIN_KEY)
    server = ServerProcess(tmp_path / "data", env=env).start()
    api = f"{server.http_url}/api/v1"
    try:
        await call("POST", f"{api}/flows/preview", ADMIN, 422, "id: x\nnodes: []\n")
        made = await call("POST", f"{api}/flows/preview", ADMIN, 201, DRAFT_YAML)
        assert made["flow_id"] == FLOW_ID and made["content_hash"].startswith("sha256:")
        assert made["version"] < 0 and made["site"] == "*" and made["expires_at"].endswith("Z")
        again = await call("POST", f"{api}/flows/preview", ADMIN, 201, DRAFT_YAML)
        assert again["version"] == made["version"]  # the same draft, drafted once
        listed = await call("GET", f"{api}/flows", ADMIN, 200)
        assert next(f for f in listed["flows"] if f["flow_id"] == FLOW_ID)["versions"] == [1]

        visitor, frames = await start_preview(server, made["preview"])
        try:
            assert frames[0]["type"] == "session", frames
            assert visitor.messages[0]["text"] == DRAFT_QUESTION
            await visitor.press("small")
            end = await visitor.lead(
                {"name": "Preview Person", "email": "preview@example.com", "consent": "true"}
            )
            assert end[-1]["type"] == "message" and end[-1]["message"]["done"], end
            preview_id = visitor.conversation_id
        finally:
            await visitor.close()

        real_id = await leave_lead(server.ws_url, "acme", 1)  # after the preview, in log order
        acme = {"Authorization": f"Bearer {api_key('acme')}"}

        async def real_lead_delivered() -> bool:
            return bool(receiver.bodies)

        await until(real_lead_delivered, "the real lead reaches the receiver")

        async def real_one_projected() -> bool:
            funnel = await call("GET", f"{api}/flows/{FLOW_ID}/funnel", ADMIN, 200)
            return bool(funnel["totals"]["leads"] == 1)

        await until(real_one_projected, "the real conversation is in the funnel")
        funnel = await call("GET", f"{api}/flows/{FLOW_ID}/funnel", ADMIN, 200)
        assert funnel["totals"]["started"] == 1 and funnel["totals"]["completed"] == 1
        deliveries = await call("GET", f"{api}/sites/acme/deliveries", acme, 200)
        assert deliveries["summary"]["counts"].get("delivered") == 1
        assert preview_id not in orjson.dumps(deliveries).decode()
        bodies = [orjson.loads(b) for seen in receiver.bodies.values() for b in seen]
        assert {b["data"]["conversation_id"] for b in bodies} == {real_id}
        await call("GET", f"{api}/conversations/{preview_id}", ADMIN, 404)

        forged = made["preview"][:-4] + ("AAAA" if not made["preview"].endswith("AAAA") else "BBBB")
        visitor, frames = await start_preview(server, forged)
        await visitor.close()
        assert [(f["type"], f.get("code")) for f in frames] == [("error", "invalid_preview")]
        assert "signature" in frames[0]["message"]

        published = await call("POST", f"{api}/flows", ADMIN, 201, DRAFT_YAML)
        assert published["version"] == 2
        visitor = await Visitor.connect(server.ws_url)
        try:
            await visitor.start(FLOW_ID, site="acme")
            assert visitor.messages[0]["text"] == DRAFT_QUESTION
        finally:
            await visitor.close()
    finally:
        assert server.proc is not None
        server.proc.terminate()
        server.proc.wait(timeout=15)
        stderr = server.proc.stderr.read().decode() if server.proc.stderr else ""
        server.stop()
    assert "Traceback" not in stderr, stderr

    checked = verify(server.data_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("verified 3 conversations"), checked.stdout
