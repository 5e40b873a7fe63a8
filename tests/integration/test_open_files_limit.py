"""Every long-running service raises its soft open-files limit to the hard one at
start (services/limits.py): with the usual soft limit of 1,024 a gateway stops
accepting at about a thousand sockets."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT, free_port, wait_ready


def _low_soft_limit() -> None:  # runs in the child before exec
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def _soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line in /proc/PID/limits")


def test_serve_raises_its_soft_open_files_limit_to_the_hard_one(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        cwd=ROOT,
        env={**os.environ, "LEADFLOW_LOG_LEVEL": "info", "LEADFLOW_SHUTDOWN_DRAIN_SECONDS": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_low_soft_limit,
    )  # fmt: skip
    try:
        wait_ready(port)
        expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
        assert _soft_open_files(proc.pid) == expected
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"open files: {expected} (was 256" in err.decode()
    assert "young generation every 50000 allocations" in err.decode()  # services/limits.py


def test_a_bad_collector_threshold_stops_a_start_with_one_line(tmp_path: Path) -> None:
    for argv in (
        ["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        ["run", "processor"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *argv],
            cwd=ROOT,
            env={**os.environ, "LEADFLOW_GC_GEN0": "7e3"},
            capture_output=True,
            timeout=60,
        )
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert "LEADFLOW_GC_GEN0 must be a whole number from 100 to 10000000, not '7e3'" in err
        assert "Traceback" not in err
