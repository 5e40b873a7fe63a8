"""Guardrail changes in the distributed mode: recorded in the ``policy-control`` topic,
applied to the published snapshot, kept across a restart of the policy service, and
written by ``leadflow policy promote --kafka`` while it runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.integration.test_policy_service import (
    FLOW,
    http,
    policy_service,
    wait_leader,
    wait_snapshot,
)
from tests.support.distributed import Cluster
from tests.support.server import ROOT

pytestmark = pytest.mark.integration


def _rails(base: str) -> dict[str, Any]:
    status, body = http("GET", f"{base}/flows/{FLOW}/guardrails")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def test_guardrail_changes_survive_a_restart_of_the_policy_service(cluster: Cluster) -> None:
    """A killed flow has a snapshot without any traffic: changes republish it at once."""
    service = policy_service(cluster, LEADFLOW_POLICY_KILLED=FLOW).start()
    wait_leader(service.wait_ready(timeout=30))
    base = f"http://127.0.0.1:{service.port}"
    status, body = http(
        "PUT", f"{base}/flows/{FLOW}/guardrails", {"holdout": 0.3, "by": "ops", "reason": "r"}
    )
    assert status == 200 and body["policy_version"] is not None, body
    status, body = http(
        "POST",
        f"{base}/flows/{FLOW}/promote",
        {"node_id": "property", "button_id": "house", "edge": "bill"},
    )
    assert status == 200, body
    published = await wait_snapshot(
        cluster, lambda s: s.guardrails.promoted_edges() == {("property", "house"): "bill"}
    )
    assert published.guardrails.holdout == 0.3

    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "app.cli",
            "policy",
            "promote",
            FLOW,
            "bill",
            "mid",
            "timeframe",
            "--kafka",
            "--by",
            "cli-test",
        ],
        cwd=ROOT,
        env={**os.environ, **service.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        before = _rails(base)
        if len(before["history"]) >= 3:
            break
        await asyncio.sleep(0.2)
    assert [h["by"] for h in before["history"]] == ["ops", "api", "cli-test"]
    await wait_snapshot(cluster, lambda s: ("bill", "mid") in s.guardrails.promoted_edges())

    service.stop()
    service = policy_service(cluster, LEADFLOW_POLICY_KILLED=FLOW).start()
    wait_leader(service.wait_ready(timeout=30))
    base = f"http://127.0.0.1:{service.port}"
    after = _rails(base)
    assert after["guardrails"] == before["guardrails"]
    assert after["history"] == before["history"]
