"""A webhook receiver in a process of its own, so a test can kill -9 it.

``python -m tests.support.receiver_process PORT SECRET LOG`` serves ``POST /hook``:
it verifies the Standard Webhooks signature with the ``standardwebhooks``
reference package and appends each verified request, as one JSON line
(``{"id": webhook-id, "body": the body}``), to ``LOG``, flushed before it answers
200 (a bad signature is answered 401 and logged as ``{"bad": true}``). A
request killed before its line is written was never acknowledged; one killed
after it may be written again by its retry: the test sees both, as a customer's
endpoint would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def serve(port: int, secret: str, log_path: Path) -> None:
    from aiohttp import web
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    webhook = Webhook(secret)
    out = log_path.open("ab")

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            out.write(orjson.dumps({"bad": True}) + b"\n")
            out.flush()
            return web.Response(status=401)
        line = {"id": request.headers["webhook-id"], "body": body.decode()}
        out.write(orjson.dumps(line) + b"\n")
        out.flush()
        return web.Response(text="ok")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/ready", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


@dataclass
class ReceiverProcess:
    port: int
    secret: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ReceiverProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.receiver_process", str(self.port),
             self.secret, str(self.log_path)],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError("the receiver process did not start")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def received(self) -> tuple[dict[str, list[bytes]], int]:
        """webhook-id -> every body acknowledged (or written) under it, and the bad count."""
        bodies: dict[str, list[bytes]] = {}
        bad = 0
        if not self.log_path.exists():
            return bodies, bad
        for line in self.log_path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut short by kill -9
            if entry.get("bad"):
                bad += 1
            else:
                bodies.setdefault(entry["id"], []).append(entry["body"].encode())
        return bodies, bad


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
