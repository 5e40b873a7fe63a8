"""The real ``leadflow`` command's errors: one line on stderr saying what is wrong
and what to do, a non-zero exit (2 for usage and configuration), no traceback;
and the serving line only once the socket is bound."""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli_errors import version
from projector.sqlite_projection import project_in_transaction
from projector.sqlite_schema import SCHEMA
from services.embedded.sqlite_eventlog import SqliteEventLog
from tests.support.server import ROOT, free_port
from tests.support.traffic import simulate

FLOWS = ("insurance-quote", "saas-demo", "solar-quote")


def leadflow(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    environment.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], status: int, *parts: str
) -> str:
    """Exit ``status``, nothing on stdout, one line on stderr holding ``parts``."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("leadflow"), lines[0]
    for part in parts:
        assert part in lines[0], (part, lines[0])
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory of leadflow serve with 40 conversations (sites acme and
    globex, the three example flows), projected as the server does."""
    directory = tmp_path_factory.mktemp("cli-errors") / "data"
    directory.mkdir()

    async def write() -> None:
        traffic = await simulate(40)
        log = SqliteEventLog(
            directory / "events.db",
            projection=project_in_transaction,
            projection_schema=SCHEMA,
        )
        log.start()
        try:
            await log.append(traffic.events)
        finally:
            log.close()

    asyncio.run(write())
    return directory


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# -- leadflow serve ---------------------------------------------------------------------


def test_serve_on_a_port_in_use_says_so_without_claiming_to_serve(
    tmp_path: Path, busy_port: int
) -> None:
    result = leadflow("serve", "--port", str(busy_port), "--data-dir", str(tmp_path / "data"))
    line = assert_one_line_error(result, 2, f"127.0.0.1:{busy_port}", "in use", "--port")
    assert "serving" not in line


def test_serve_says_it_serves_only_once_it_listens(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        env={**os.environ, "LEADFLOW_LOG_LEVEL": "warning", "LEADFLOW_POLICY": "uniform"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "no serving line"
        line = proc.stdout.readline()
        assert line.startswith(f"Leadflow is serving the demo at http://127.0.0.1:{port}/")
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the line came after the socket listened: a connection is accepted
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_serve_without_the_flow_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-flows"
    for args, env in (
        (("--flows", str(missing)), {}),
        ((), {"LEADFLOW_FLOWS_DIR": str(missing)}),
    ):
        result = leadflow(
            "serve", *args, "--data-dir", str(tmp_path / "data"), "--port", "1", env=env
        )
        assert_one_line_error(result, 2, str(missing), "--flows")


def test_serve_without_the_sites_file(tmp_path: Path) -> None:
    missing = tmp_path / "sites.yaml"
    for args, env in (
        (("--sites", str(missing)), {}),
        ((), {"LEADFLOW_SITES_FILE": str(missing)}),
    ):
        result = leadflow(
            "serve", *args, "--data-dir", str(tmp_path / "data"), "--port", "1", env=env
        )
        assert_one_line_error(result, 2, str(missing), "--sites")


def test_serve_with_a_sites_file_that_is_not_yaml(tmp_path: Path) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites: [\n  - id: acme\n    origins: [unclosed\n")
    result = leadflow(
        "serve", "--sites", str(sites), "--data-dir", str(tmp_path / "data"), "--port", "1"
    )
    assert_one_line_error(result, 2, "cannot start")


def test_serve_with_a_directory_without_flow_files(tmp_path: Path) -> None:
    empty = tmp_path / "flows"
    empty.mkdir()
    result = leadflow("serve", "--flows", str(empty), "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(result, 2, "no flow files", str(empty))


def test_usage_errors_are_one_line() -> None:
    assert_one_line_error(leadflow("serve", "--port", "eighty"), 2, "--port", "--help")
    assert_one_line_error(leadflow(), 2, "leadflow --help")
    assert_one_line_error(leadflow("no-such-command"), 2, "no-such-command")


def test_version() -> None:
    result = leadflow("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"leadflow {version()}"
    assert version() != "unknown"


# -- Kafka ------------------------------------------------------------------------------


def test_topics_without_kafka() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    result = leadflow("topics", env={"KAFKA_BOOTSTRAP_SERVERS": nowhere})
    assert_one_line_error(result, 2, f"cannot reach Kafka at {nowhere}", "KAFKA_BOOTSTRAP_SERVERS")


def test_a_kafka_export_without_kafka(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    out = tmp_path / "x.jsonl"
    result = leadflow(
        "export", "--kafka", "--out", str(out), env={"KAFKA_BOOTSTRAP_SERVERS": nowhere}
    )
    assert_one_line_error(result, 2, f"cannot reach Kafka at {nowhere}")
    assert not out.exists()


# -- mistyped ids -------------------------------------------------------------------------


def test_report_funnel_of_a_mistyped_flow_lists_the_flows(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "funnel.html"
    result = leadflow(
        "report", "funnel", "--flow", "solar-qoute", "--data-dir", str(data_dir), "--out", str(out)
    )
    line = assert_one_line_error(result, 2, "'solar-qoute'", "--flow")
    assert all(flow in line for flow in FLOWS)
    assert not out.exists()


def test_export_of_a_mistyped_flow_or_site_lists_the_ids(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "week.jsonl"
    result = leadflow("export", "--flow", "sollar", "--data-dir", str(data_dir), "--out", str(out))
    line = assert_one_line_error(result, 2, "'sollar'", "--flow")
    assert all(flow in line for flow in FLOWS)
    result = leadflow("export", "--site", "acmee", "--data-dir", str(data_dir), "--out", str(out))
    line = assert_one_line_error(result, 2, "'acmee'", "--site")
    assert "acme" in line.replace("'acmee'", "") and "globex" in line
    assert not out.exists()
    # a site of the log that no sites file names is known all the same
    good = leadflow("export", "--site", "globex", "--data-dir", str(data_dir), "--out", str(out))
    assert good.returncode == 0, good.stderr
    assert out.stat().st_size > 0


def test_leads_of_an_unknown_site_lists_the_sites(data_dir: Path) -> None:
    result = leadflow("leads", "acmee", "--data-dir", str(data_dir))
    line = assert_one_line_error(result, 2, "'acmee'")
    assert "globex" in line and "acme," in line
    known = leadflow("leads", "acme", "--data-dir", str(data_dir))
    assert known.returncode == 0 and known.stdout.count("\n") > 0, known.stderr
    # a configured site without leads yet: an empty list, not an error
    assert leadflow("leads", "demo", "--data-dir", str(data_dir)).returncode == 0


def test_policy_evaluate_of_a_mistyped_flow(data_dir: Path) -> None:
    result = leadflow(
        "policy", "evaluate", "--candidate", "uniform", "--flow", "x", "--data-dir", str(data_dir)
    )
    assert_one_line_error(result, 2, "'x'", "--flow")


def test_commands_on_a_missing_data_directory(tmp_path: Path) -> None:
    for command in (("leads", "acme"), ("conversation", "c1"), ("erase", "c1")):
        result = leadflow(*command, "--data-dir", str(tmp_path / "nothing"))
        assert_one_line_error(result, 2, "no data in", "--data-dir")


# -- the last resort ------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_the_traceback_only_in_debug(tmp_path: Path) -> None:
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "events.db").write_text("not a database, whatever its name says\n")
    result = leadflow("conversation", "c1", "--data-dir", str(broken))
    assert_one_line_error(result, 1, "unexpected error", "LEADFLOW_LOG_LEVEL=debug")
    debug = leadflow(
        "conversation", "c1", "--data-dir", str(broken), env={"LEADFLOW_LOG_LEVEL": "debug"}
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("leadflow conversation: unexpected error")


def test_commands_answer_quickly_without_services() -> None:
    """No retry loop hides the error: a missing Kafka is reported within seconds."""
    began = time.monotonic()
    leadflow("topics", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    assert time.monotonic() - began < 30
