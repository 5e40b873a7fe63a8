"""A reconnect storm is queued by the kernel, not dropped (services/limits.py).

When a gateway dies, its visitors reconnect to the others within a second.
Connections the event loop has not accepted yet wait in the listen socket's
backlog; beyond it the kernel drops their SYNs, and each visitor's TCP stack
retries after 1, 3, 7 s. ``leadflow serve`` and the gateway listen with a
backlog of ``LEADFLOW_LISTEN_BACKLOG`` (4,096) instead of aiohttp's 128.

The test stops the server's process (SIGSTOP: an event loop that accepts
nothing for a while, as under a storm), opens many connections at once, and
counts those the kernel completed for it."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.limits import listen_backlog, somaxconn
from tests.support.server import ServerProcess

STORM = 600

needs_room = pytest.mark.skipif(
    (somaxconn() or 0) < STORM, reason=f"net.core.somaxconn below {STORM} caps any backlog"
)


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def connect_all(port: int, count: int, wait_s: float) -> tuple[list[socket.socket], int]:
    """``count`` non-blocking connects at once; how many completed within ``wait_s``."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    pending = {s.fileno(): s for s in socks}
    done = 0
    deadline = time.monotonic() + wait_s
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            sock = pending.pop(fd)
            poller.unregister(fd)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done += 1
    return socks, done


def healthz_over(sock: socket.socket) -> bytes:
    sock.setblocking(True)
    sock.settimeout(10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return sock.recv(64)


@needs_room
def test_a_storm_of_connections_while_the_loop_is_stalled_is_queued_and_then_served(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        assert server.proc is not None
        with stopped(server.proc.pid):
            socks, completed = connect_all(server.port, STORM, wait_s=2.0)
        try:
            assert completed == STORM
            for sock in socks[:: STORM // 10]:  # the queued ones are served once it runs
                assert healthz_over(sock).startswith(b"HTTP/1.1 200")
        finally:
            for sock in socks:
                sock.close()
    finally:
        server.stop()


@needs_room
def test_with_aiohttps_backlog_of_128_most_of_the_storm_is_dropped(tmp_path: Path) -> None:
    """The control: the test above fails with the backlog aiohttp would use."""
    server = ServerProcess(tmp_path / "data", env={"LEADFLOW_LISTEN_BACKLOG": "128"}).start()
    try:
        assert server.proc is not None
        with stopped(server.proc.pid):
            socks, completed = connect_all(server.port, STORM, wait_s=2.0)
        for sock in socks:
            sock.close()
        assert completed <= 129 + 8  # the backlog (+1, as Linux counts), a little slack
    finally:
        server.stop()


def test_the_backlog_asked_for_is_logged_with_what_the_kernel_grants(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = tmp_path / "somaxconn"
    cap.write_text("1024\n")
    with caplog.at_level(logging.INFO, logger="leadflow.limits"):
        assert listen_backlog("gateway", 4096, cap) == 4096
        assert listen_backlog("gateway", 512, cap) == 512
    capped, plain = caplog.records
    assert capped.levelno == logging.WARNING
    assert capped.getMessage() == "listen backlog: 1024 (asked 4096; raise net.core.somaxconn)"
    assert plain.levelno == logging.INFO and plain.getMessage() == "listen backlog: 512"
    assert listen_backlog("serve", 300, tmp_path / "absent") == 300  # no /proc: as asked
