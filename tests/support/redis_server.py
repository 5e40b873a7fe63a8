"""A real Redis for tests: ``REDIS_URL`` if set, else testcontainers when a Docker
engine answers, else Debian's ``redis-server`` started on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.kafka import docker_engine_answers
from tests.support.server import free_port


@dataclass
class LocalRedis:
    """``redis-server`` on 127.0.0.1 with its data in ``directory`` (AOF on, so a
    restart keeps what was written, like a production Redis with persistence)."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url_for_session(directory: Path) -> tuple[str, Callable[[], None]]:
    """(url, cleanup) following the project's rule for external services."""
    if url := os.environ.get("REDIS_URL"):
        return url, lambda: None
    try:
        if not docker_engine_answers():
            raise RuntimeError("no Docker engine")
        container = _redis_container_class()("redis:7-alpine")
        container.start()
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        return f"redis://{host}:{port}/0", container.stop
    except Exception:  # no testcontainers, or no Docker engine answering
        local = LocalRedis(directory).start()
        return local.url, local.stop


def _redis_container_class() -> Any:
    import importlib

    for module in ("testcontainers.community.redis", "testcontainers.redis"):
        try:
            return importlib.import_module(module).RedisContainer
        except ImportError:
            continue
    raise ImportError("testcontainers' Redis module is not installed")
