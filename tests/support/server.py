"""Start the real ``leadflow serve`` as a subprocess for integration and e2e tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
BELOW_EPHEMERAL = 12_000  # ports tried, just below the kernel's ephemeral range


def free_port() -> int:
    """A port free on every address (the services bind 0.0.0.0, and a port free on
    127.0.0.1 may be the local end of a connection on 127.0.0.2), below the
    kernel's ephemeral range when it can: a port from that range (a bind to port 0)
    may be taken as the local end of an outgoing connection in the moment before
    the service binds it ("address already in use": a benchmark's processor, after
    a run that had opened and closed 100,000 sockets)."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if low > 2048:
        for port in random.sample(range(max(1024, low - BELOW_EPHEMERAL), low), 64):
            with socket.socket() as sock:
                try:
                    sock.bind(("0.0.0.0", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        bound: int = sock.getsockname()[1]
        return bound


def wait_ready(port: int, timeout: float = 30.0) -> bool:
    """Poll ``/readyz`` on 127.0.0.1:``port`` until it answers or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    return False


@dataclass
class ServerProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        env = {
            **os.environ,
            "LEADFLOW_LOG_LEVEL": "warning",
            "LEADFLOW_SHUTDOWN_DRAIN_SECONDS": "0",  # no load balancer to leave: stop at once
            **self.env,
        }
        cmd = [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise RuntimeError(f"server exited with {self.proc.returncode}: {err.decode()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become ready")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._drain()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._drain()

    def _drain(self) -> None:
        assert self.proc is not None
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another ``leadflow`` command against this server's data directory."""
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args, "--data-dir", str(self.data_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
