"""Guardrail changes and promotions in ``leadflow serve``: recorded in events.db's
``policy_control`` (who, when, what), applied at once, kept across a restart, shown
with their history; ``leadflow policy promote`` reaches the running server;
``recommend`` prints the stopping rule's verdict."""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from policy.snapshot import decode_snapshot
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

ADMIN_KEY = "promotion-test-admin-key"
FLOW = "solar-quote"


def _call(
    server: ServerProcess, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{server.http_url}/policy{path}",
        data=None if body is None else orjson.dumps(body),
        method=method,
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.fixture
def server(fresh_server: ServerProcess) -> ServerProcess:
    fresh_server.env = {
        "LEADFLOW_ADMIN_API_KEY_SHA256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest(),
        "LEADFLOW_POLICY_MIN_OUTCOMES": "100000",  # no fits: this is about guardrails
        "LEADFLOW_POLICY_CHANGE_WAIT_SECONDS": "0.5",  # no snapshot carries the first changes
    }
    return fresh_server.start()


def _rails(server: ServerProcess) -> dict[str, Any]:
    status, body = _call(server, "GET", f"/flows/{FLOW}/guardrails")
    assert status == 200
    return body


def test_changes_are_recorded_applied_kept_across_a_restart_and_audited(
    server: ServerProcess,
) -> None:
    """A restart used to revert every guardrail change to the environment's. The flow
    has no snapshot before it is killed: its changes are recorded and pending (202)."""
    status, body = _call(
        server, "PUT", f"/flows/{FLOW}/guardrails", {"holdout": 0.25, "by": "ann", "reason": "r1"}
    )
    assert status == 202 and body["guardrails"]["holdout"] == 0.25, body
    assert body["pending"] is True and body["policy_version"] is None, body
    status, body = _call(
        server,
        "POST",
        f"/flows/{FLOW}/promote",
        {"node_id": "property", "button_id": "house", "edge": "bill", "by": "ann"},
    )
    assert status == 202 and body["pending"] is True, body
    assert body["guardrails"]["promoted"] == [
        {"node_id": "property", "button_id": "house", "edge": "bill"}
    ]
    bad = _call(
        server,
        "POST",
        f"/flows/{FLOW}/promote",
        {"node_id": "property", "button_id": "house", "edge": "nowhere"},
    )
    assert bad[0] == 400
    assert (
        _call(
            server,
            "POST",
            f"/flows/{FLOW}/promote",
            {"node_id": "x", "button_id": "y", "edge": "z"},
        )[0]
        == 404
    )

    # the CLI writes the control log; the running server follows it
    done = server.cli("policy", "promote", FLOW, "bill", "mid", "timeframe", "--by", "cli-test")
    assert done.returncode == 0, done.stderr
    assert "promoted timeframe" in done.stdout
    deadline = time.monotonic() + 10
    while len(_rails(server)["history"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = _rails(server)
    assert [h["by"] for h in before["history"]] == ["ann", "ann", "cli-test"]
    assert before["history"][0]["reason"] == "r1"
    assert before["history"][0]["change"] == {"holdout": 0.25}

    server.stop()
    server.start()
    after = _rails(server)
    assert after["guardrails"] == before["guardrails"]
    assert after["guardrails"]["holdout"] == 0.25
    assert {(p["node_id"], p["edge"]) for p in after["guardrails"]["promoted"]} == {
        ("property", "bill"),
        ("bill", "timeframe"),
    }
    assert after["history"] == before["history"]

    # a killed flow publishes a snapshot at once: it carries the promotions (format v3)
    status, body = _call(server, "PUT", f"/flows/{FLOW}/guardrails", {"killed": True})
    assert status == 200 and body["pending"] is False and body["policy_version"] is not None
    installed = _rails(server)  # the installed snapshot has these guardrails
    assert installed["pending"] is False and installed["policy_version"] is not None, installed
    snap = server.cli(
        "policy", "snapshot", "--flow", FLOW, "--out", str(server.data_dir / "s.json")
    )
    assert snap.returncode == 0, snap.stderr
    stored = decode_snapshot((server.data_dir / "s.json").read_bytes())
    assert stored.guardrails.promoted_edges() == {
        ("property", "house"): "bill",
        ("bill", "mid"): "timeframe",
    }
    status, rec = _call(server, "GET", f"/flows/{FLOW}/recommendation?max_loss=0.01")
    assert status == 200
    assert rec["rule"] == {"p_best": 0.95, "max_loss": 0.01}
    assert not any(p["promote"] for p in rec["decision_points"])  # a uniform snapshot
    shown = server.cli("policy", "recommend", FLOW)
    assert shown.returncode == 0, shown.stderr
    assert "property/house" in shown.stdout and "keep exploring" in shown.stdout
