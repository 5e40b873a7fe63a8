"""Erasure (crypto-shredding), health, metrics and refusing bad flow files at start."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.visitor import Visitor


async def _lead(server: ServerProcess, email: str) -> str:
    rng = random.Random(11)
    for _ in range(30):  # a socket of its own per conversation: a socket starts only a few
        visitor = await Visitor.connect(server.ws_url)
        try:
            await visitor.start("insurance-quote")
            while visitor.current()["kind"] == "question":  # type: ignore[index]
                await visitor.press(rng.choice(visitor.current()["buttons"])["id"])  # type: ignore[index]
            if visitor.current()["kind"] == "lead_form":  # type: ignore[index]
                await visitor.lead({"name": "Eve", "email": email, "consent": "true"})
                await visitor.play_to_end(rng)
                return visitor.conversation_id
        finally:
            await visitor.close()
    raise AssertionError("no path to a lead form found")


def _lead_status(server: ServerProcess, cid: str) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        result = server.cli("conversation", cid)
        if result.returncode == 0 and '"lead"' in result.stdout:
            status: str = orjson.loads(result.stdout)["lead"]["status"]
            return status
        time.sleep(0.1)
    raise AssertionError(f"lead of {cid} never projected")


async def test_erase_shreds_lead_details(server: ServerProcess) -> None:
    """`leadflow erase` deletes the conversation key: the read model then shows the lead
    as erased and its details cannot be recovered, while other leads stay readable."""
    keep = await _lead(server, "keep@example.com")
    gone = await _lead(server, "gone@example.com")
    assert _lead_status(server, gone) == "captured"
    result = server.cli("erase", gone)
    assert result.returncode == 0 and "erased" in result.stdout
    assert _lead_status(server, gone) == "erased"
    assert _lead_status(server, keep) == "captured"
    leads = {
        lead["conversation_id"]: lead
        for lead in map(orjson.loads, server.cli("leads", "demo").stdout.splitlines())
    }
    assert leads[gone]["status"] == "erased" and leads[gone]["fields"] is None
    assert leads[keep]["fields"]["email"] == "keep@example.com"
    assert "nothing to erase" in server.cli("erase", "no-such-conversation").stdout


def test_health_readiness_and_metrics(tmp_path: Path) -> None:
    """/healthz and /readyz answer 200 on the public port; /metrics is not there, it is
    on LEADFLOW_METRICS_PORT (off unless set) with the gateway's counters."""
    metrics_port = free_port()
    env = {"LEADFLOW_METRICS_PORT": str(metrics_port)}
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(server.http_url + path, timeout=5) as resp:
                assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError) as public:
            urllib.request.urlopen(server.http_url + "/metrics", timeout=5)
        assert public.value.code == 404
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        assert "leadflow_gateway_open_connections" in text
        assert "# TYPE leadflow_gateway_command_seconds histogram" in text
    finally:
        server.stop()


def test_the_demo_page_is_opt_in(tmp_path: Path) -> None:
    """LEADFLOW_DEMO_PAGE=off: / answers 404, the widget is still served."""
    server = ServerProcess(tmp_path / "data", env={"LEADFLOW_DEMO_PAGE": "off"}).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as page:
            urllib.request.urlopen(server.http_url + "/", timeout=5)
        assert page.value.code == 404
        with urllib.request.urlopen(server.http_url + "/widget.js", timeout=5) as resp:
            assert resp.status == 200
    finally:
        server.stop()


def test_widget_and_demo_page_are_served(server: ServerProcess) -> None:
    """The embeddable widget (its loader and the content-hashed file the loader adds)
    and the demo page that embeds it are served."""
    with urllib.request.urlopen(server.http_url + "/widget.js", timeout=5) as resp:
        assert "javascript" in resp.headers["Content-Type"]
        hashed = re.search(rb"widget\.[0-9a-f]{16}\.js", resp.read())
    assert hashed is not None
    with urllib.request.urlopen(f"{server.http_url}/{hashed.group().decode()}", timeout=5) as resp:
        assert "javascript" in resp.headers["Content-Type"]
        assert b"attachShadow" in resp.read()
    with urllib.request.urlopen(server.http_url + "/", timeout=5) as resp:
        assert b"widget.js" in resp.read()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("id: broken\nversion: 1\nstart: nowhere\nnodes: []\n", "nodes"),
        (
            "id: bad\nversion: 1\nstart: a\nnodes:\n"
            "  - {id: a, kind: message, text: hi, next: ghost}\n"
            "  - {id: b, kind: end, text: bye}\n",
            "unknown next node 'ghost'",
        ),
    ],
)
def test_server_refuses_to_start_with_a_bad_flow_file(
    tmp_path: Path, content: str, expected: str
) -> None:
    """A bad flow file stops `leadflow serve` with every error listed, naming the file."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "bad.yaml").write_text(content)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--flows",
            str(flows),
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and expected in result.stderr


def test_server_refuses_a_bad_setting_with_a_clear_message(tmp_path: Path) -> None:
    """A nonsensical limit stops `leadflow serve` with the variable's name, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "LEADFLOW_RATE_PER_SECOND": "nan"},
    )
    assert result.returncode == 2
    assert "LEADFLOW_RATE_PER_SECOND" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEADFLOW_PROCESSOR_STATE_CACHE", "0"),
        ("LEADFLOW_PROCESSOR_STATE_CACHE", "lots"),
        ("LEADFLOW_PROCESSOR_CHECKPOINT_SECONDS", "-1"),
        ("LEADFLOW_PROCESSOR_CHECKPOINT_SECONDS", "nan"),
    ],
)
def test_the_processor_refuses_a_bad_state_setting_before_connecting(name: str, value: str) -> None:
    """Checked before Kafka is asked anything: no broker listens at this address."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "processor"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "LEADFLOW_COMMAND_SECRET": "integration-command-secret-0123456789",
            name: value,
        },
    )
    assert result.returncode == 2, result.stderr
    assert name in result.stderr and "Traceback" not in result.stderr
