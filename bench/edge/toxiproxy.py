"""Toxiproxy (github.com/Shopify/toxiproxy, v2.5.0): a TCP proxy that adds latency.

Installed from the Go module proxy into ``~/go/bin`` when missing (``go install`` of
its ``cmd/server`` and ``cmd/cli`` packages, renamed ``toxiproxy-server`` and
``toxiproxy-cli``), run as a child process on loopback and driven through its HTTP
API: one proxy per region, each with a ``latency`` toxic on both directions (so the
one-way latency is added to every byte a side sends: a round trip costs twice it).

What it does not model: the proxy accepts the client's TCP connection itself, so
the TCP handshake to a region costs no added latency (a real far region's costs one
more round trip, and TLS another one or two); the numbers of the far region are
therefore a lower bound of what a visitor there waits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

VERSION = "v2.5.0"
MODULE = "github.com/Shopify/toxiproxy/v2"
GO_BIN = Path.home() / "go" / "bin"
BINARIES = {"toxiproxy-server": "server", "toxiproxy-cli": "cli"}


def go_command() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise SystemExit("bench.edge needs Go to install Toxiproxy (or put it in ~/go/bin)")
    return found


def ensure_installed() -> Path:
    """``~/go/bin/toxiproxy-server``, installed (with the CLI) if it is not there."""
    server = GO_BIN / "toxiproxy-server"
    if server.exists() and (GO_BIN / "toxiproxy-cli").exists():
        return server
    print(f"installing Toxiproxy {VERSION} into {GO_BIN} (go install) ...", flush=True)
    GO_BIN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="toxiproxy-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod"}
        packages = [f"{MODULE}/cmd/{package}@{VERSION}" for package in BINARIES.values()]
        subprocess.run([go_command(), "install", *packages], env=env, check=True, timeout=600)
        for name, package in BINARIES.items():
            shutil.move(str(Path(gobin) / package), GO_BIN / name)
    return server


@dataclass
class Toxiproxy:
    """A running ``toxiproxy-server`` on ``port`` (its API)."""

    binary: Path
    port: int
    log: Path
    version: str = ""
    regions: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 10.0) -> Toxiproxy:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "-host", "127.0.0.1", "-port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.version = str(self._call("GET", "/version"))
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"toxiproxy-server did not answer on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw.decode().strip()

    def recreate(self) -> None:
        """Delete and make again every proxy this object made (same ports, same toxics)."""
        for name, (listen_port, upstream_port, one_way_ms) in list(self.regions.items()):
            self._call("DELETE", f"/proxies/{name}")
            self.region(name, listen_port, upstream_port, one_way_ms)

    def region(self, name: str, listen_port: int, upstream_port: int, one_way_ms: int) -> None:
        """A proxy ``name`` on ``listen_port`` to ``upstream_port`` adding ``one_way_ms``
        to each direction (no jitter: the spread measured is the stack's own)."""
        self.regions[name] = (listen_port, upstream_port, one_way_ms)
        self._call(
            "POST",
            "/proxies",
            {
                "name": name,
                "listen": f"127.0.0.1:{listen_port}",
                "upstream": f"127.0.0.1:{upstream_port}",
                "enabled": True,
            },
        )
        for stream in ("upstream", "downstream"):
            toxic = {
                "name": f"{name}-{stream}",
                "type": "latency",
                "stream": stream,
                "toxicity": 1.0,
                "attributes": {"latency": one_way_ms, "jitter": 0},
            }
            self._call("POST", f"/proxies/{name}/toxics", toxic)
