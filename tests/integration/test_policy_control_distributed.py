"""Guardrail changes in the distributed mode: recorded in the ``policy-control`` topic,
applied to the published snapshot, kept across a restart of the policy service, and
written by ``leadflow policy promote --kafka`` while it runs. A change answers 200
with the version of the snapshot that carries it, or 202 pending when no snapshot
does within the bound (policy.change_answer)."""

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


def _carried(status: int, body: Any) -> str:
    """The version a change answered with: 200, not pending, a version."""
    assert status == 200 and body["pending"] is False, body
    assert isinstance(body["policy_version"], str) and isinstance(body["position"], int), body
    return body["policy_version"]


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
    _carried(status, body)
    status, body = http(
        "POST",
        f"{base}/flows/{FLOW}/promote",
        {"node_id": "property", "button_id": "house", "edge": "bill"},
    )
    promoted = _carried(status, body)
    published = await wait_snapshot(
        cluster, lambda s: s.guardrails.promoted_edges() == {("property", "house"): "bill"}
    )
    assert published.guardrails.holdout == 0.3 and published.version == promoted

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
    assert after["pending"] is False and after["policy_version"] is not None, after

    # a change right after the restart is carried by the snapshot read back, republished
    status, body = http("PUT", f"{base}/flows/{FLOW}/guardrails", {"min_exploration": 0.1})
    version = _carried(status, body)
    assert body["guardrails"]["min_exploration"] == 0.1
    carried = await wait_snapshot(cluster, lambda s: s.version == version)
    assert carried.guardrails.min_exploration == 0.1 and carried.guardrails.holdout == 0.3


async def test_a_change_no_snapshot_carries_yet_answers_202_pending(cluster: Cluster) -> None:
    """A flow without traffic has no snapshot: the change is recorded (durable) and
    pending; the kill switch then publishes a snapshot that carries both."""
    service = policy_service(cluster, LEADFLOW_POLICY_CHANGE_WAIT_SECONDS="0.5").start()
    wait_leader(service.wait_ready(timeout=30))
    base = f"http://127.0.0.1:{service.port}"
    status, body = http("PUT", f"{base}/flows/{FLOW}/guardrails", {"holdout": 0.2, "by": "ops"})
    assert status == 202, body
    assert body["pending"] is True and body["policy_version"] is None, body
    assert body["guardrails"]["holdout"] == 0.2 and isinstance(body["position"], int), body
    rails = _rails(base)
    assert rails["pending"] is True and rails["policy_version"] is None, rails
    assert [h["change"] for h in rails["history"]] == [{"holdout": 0.2}]

    status, body = http("PUT", f"{base}/flows/{FLOW}/guardrails", {"killed": True})
    version = _carried(status, body)
    carried = await wait_snapshot(cluster, lambda s: s.version == version)
    assert carried.guardrails.holdout == 0.2 and carried.guardrails.killed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rails = _rails(base)
        if not rails["pending"]:
            break
        await asyncio.sleep(0.1)
    # installed: the snapshot answered, or a later one with the same guardrails (the
    # schedule may publish the killed flow's first snapshot at the same moment)
    assert rails["pending"] is False and rails["policy_version"] is not None, rails
