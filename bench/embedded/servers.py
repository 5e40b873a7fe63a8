"""The two servers under test, each a subprocess on a free local port.

Leadflow is started by the tests' own ``ServerProcess`` (``python -m app.cli
serve`` with a data dir, ready on ``/readyz``), so the benchmark measures the
server exactly as the integration tests start it. ``ServerProcess`` pipes the
server's stdout and stderr and reads them only when it stops; a benchmark runs
long enough for a chatty server to fill a pipe and block on it, so
``LeadflowServer`` drains both pipes in threads and keeps their last lines.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Protocol

from bench.embedded.stats import Json
from tests.support.server import ROOT, ServerProcess, free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 50
# A per-connection rate limit fit for real visitors would refuse a load generator.
SERVER_ENV = {"LEADFLOW_RATE_PER_SECOND": "1000", "LEADFLOW_RATE_BURST": "1000"}


class Server(Protocol):
    """What a run needs from a server: its process and its addresses."""

    @property
    def pid(self) -> int: ...

    @property
    def ws_url(self) -> str: ...

    @property
    def http_url(self) -> str: ...


def _drain(stream: IO[bytes], tail: collections.deque[str]) -> None:
    """Read a pipe to its end, keeping the last lines."""
    try:
        for raw in stream:
            tail.append(raw.decode(errors="replace").rstrip("\n"))
    except ValueError:  # closed under us by ServerProcess.stop
        pass


def _stopped(proc: subprocess.Popen[bytes], tail: collections.deque[str]) -> Json:
    code = proc.returncode
    return {"exit_code": code, "killed_after_timeout": code == -9, "log": list(tail)}


class LeadflowServer:
    """``leadflow serve`` on a fresh data dir, via ``tests.support.server.ServerProcess``."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.process = ServerProcess(data_dir, env={**SERVER_ENV, **env})
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._drainers: list[threading.Thread] = []

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    @property
    def ws_url(self) -> str:
        return self.process.ws_url

    @property
    def http_url(self) -> str:
        return self.process.http_url

    def start(self) -> None:
        self.process.start(timeout=START_TIMEOUT_S)
        proc = self.process.proc
        assert proc is not None
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                thread = threading.Thread(target=_drain, args=(stream, self._tail), daemon=True)
                thread.start()
                self._drainers.append(thread)

    def stop(self) -> Json:
        """SIGTERM, then SIGKILL after 10 s (ServerProcess.stop); exit code and last lines."""
        if self.process.proc is None:
            return {"exit_code": None, "killed_after_timeout": False, "log": []}
        self.process.stop()
        for thread in self._drainers:
            thread.join(timeout=5.0)
        return _stopped(self.process.proc, self._tail)


class EchoServer:
    """``python -m bench.embedded.echo PORT``, output to a log file."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.embedded.echo", str(self.port)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"echo server did not become ready:\n{self._log_text()}")

    def stop(self) -> Json:
        if self.proc is None:
            return {"exit_code": None, "killed_after_timeout": False, "log": []}
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        tail = collections.deque(self._log_text().splitlines(), maxlen=LOG_TAIL_LINES)
        return _stopped(self.proc, tail)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
