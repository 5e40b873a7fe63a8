"""The flow registry in the distributed mode (real Kafka, real processes): every
service seeds the ``flows`` topic from the same flow files at once and one version
results; a version published through the projector's admin API reaches new
visitors on both gateways within 1 s without a restart, while a visitor already
mid-conversation finishes on the version it started on; rolling back (activating
the old version) reaches them as fast. The gateways' metrics and logs show it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from services.catalog import EXAMPLE_FLOWS_DIR
from services.http_auth import hash_api_key
from services.registry.seed import read_flow_documents
from tests.integration.test_flow_registry_embedded import (
    ADMIN,
    ADMIN_KEY,
    FLOW,
    NEW_GREETING,
    OLD_GREETING,
    V1_QUESTIONS,
    call,
    sites_yaml,
    solar_v2_yaml,
)
from tests.support.distributed import Cluster, Service
from tests.support.server import ROOT
from tests.support.visitor import Visitor

pytestmark = pytest.mark.integration
PUBLISH_SECONDS = 1.0  # the bound: publish -> new visitors on every gateway


async def greeting(gateway: Service) -> str:
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        frames = await visitor.start(FLOW)
        texts = [f["message"]["text"] for f in frames if f["type"] == "message"]
        return str(texts[0])
    finally:
        await visitor.close()


async def seconds_until(gateway: Service, text: str, since: float, bound: float = 10.0) -> float:
    """Seconds from ``since`` until a new visitor of ``gateway`` is greeted with ``text``."""
    while time.monotonic() - since < bound:
        if (await greeting(gateway)).startswith(text):
            return time.monotonic() - since
    raise AssertionError(f"{gateway.name}: no {text!r} after {bound} s")


def metrics(gateway: Service) -> str:
    port = gateway.env["LEADFLOW_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def until_metrics(gateway: Service, want: set[str], seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        shown = {line for line in metrics(gateway).splitlines() if line.startswith("leadflow_flow")}
        if want <= shown:
            return
        assert time.monotonic() < deadline, (sorted(want - shown), sorted(shown))
        await asyncio.sleep(0.1)


def configure(cluster: Cluster, tmp_path: Path) -> dict[str, str]:
    flows = tmp_path / "flows"
    shutil.copytree(EXAMPLE_FLOWS_DIR, flows)
    sites = tmp_path / "sites.yaml"
    sites.write_text(sites_yaml())
    return {
        "LEADFLOW_FLOWS_DIR": str(flows),
        "LEADFLOW_SITES_FILE": str(sites),
        "LEADFLOW_ADMIN_API_KEY_SHA256": hash_api_key(ADMIN_KEY),
    }


async def test_publish_and_rollback_reach_both_gateways_without_a_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = configure(cluster, tmp_path)
    services = [
        cluster.processor("processor-a"),
        cluster.processor("processor-b"),
        cluster.gateway(0),
        cluster.gateway(1),
        cluster.projector(),
    ]
    for service in services:
        service.env.update(env)
        service.start()  # all at once: five processes seed the same files together
    processors, (first, second, projector) = services[:2], services[2:]
    for processor in processors:
        processor.wait_log("Worker ready")
    for service in (first, second, projector):
        service.wait_ready()
    api = f"http://127.0.0.1:{projector.port}/api/v1"
    listed = await call("GET", f"{api}/flows", ADMIN, 200)
    files = {str(d["id"]): [d["version"]] for d in read_flow_documents(EXAMPLE_FLOWS_DIR)}
    # one version per file, however many processes seeded it at once
    assert {f["flow_id"]: f["versions"] for f in listed["flows"]} == files
    assert files[FLOW] == [1]

    early = await Visitor.connect(first.ws_url)
    try:
        await early.start(FLOW)
        assert early.messages[0]["text"].startswith(OLD_GREETING)

        published = await call("POST", f"{api}/flows", ADMIN, 201, solar_v2_yaml())
        answered = time.monotonic()
        assert published["version"] == 2 and published["active_for"] == ["*"]
        took = await asyncio.gather(
            seconds_until(first, NEW_GREETING, answered),
            seconds_until(second, NEW_GREETING, answered),
        )
        print(f"publish -> new version on gateways 0, 1: {took[0]:.3f} s, {took[1]:.3f} s")
        assert max(took) < PUBLISH_SECONDS, took

        await early.answer_inputs()  # the first name
        await early.press("house")  # mid-conversation: finishes on version 1
        asked = early.messages[-1]
        assert asked["text"] == V1_QUESTIONS[asked["node_id"]]
    finally:
        await early.close()

    await call(
        "PUT", f"{api}/flows/{FLOW}/active", ADMIN, 200, b'{"version": 1}', "application/json"
    )
    answered = time.monotonic()
    took = await asyncio.gather(
        seconds_until(first, OLD_GREETING, answered),
        seconds_until(second, OLD_GREETING, answered),
    )
    print(f"rollback -> old version on gateways 0, 1: {took[0]:.3f} s, {took[1]:.3f} s")
    assert max(took) < PUBLISH_SECONDS, took

    for gateway in (first, second):  # the metrics are refreshed every 0.2 s
        want = {
            f'leadflow_flow_active_version{{flow_id="{FLOW}",site="*"}} 1.0',
            f'leadflow_flow_versions{{flow_id="{FLOW}"}} 2.0',
            'leadflow_flow_registry_applied_total{kind="activated"} 5.0',
            "leadflow_flow_registry_lag_records 0.0",
        }
        await until_metrics(gateway, want)
        log = gateway.log_text()
        assert f"flow {FLOW} version 2 published" in log
        assert f"flow {FLOW} version 1 activated for every site" in log

    # the conversations of both versions, on both processors, verify from the topics:
    # the verifier takes version 2 from the flows topic (the files hold only version 1)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "replay", "--verify", "--kafka"],
        cwd=ROOT,
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": identical" in done.stdout
