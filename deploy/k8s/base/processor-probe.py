"""Probes of the conversation processor, run by the kubelet inside its container.

The processor is a faust worker without an HTTP server (``web_enabled=False`` in
services/processor/app.py), so its probes are commands:

    python /probe/probe.py live     the worker process is there and not a zombie: cheap,
                                    no network (a Kafka or Redis outage restarts nothing)
    python /probe/probe.py ready    Kafka (one bootstrap server) and Redis answer

Exit status 0 means healthy. Until the processor serves /healthz and /readyz itself
(docs/runbook.md, "What the manifests do not do yet"), this is what can be probed
from outside the process.
"""

from __future__ import annotations

import os
import socket
import sys

TIMEOUT = 2.0


def live() -> bool:
    """PID 1 is the worker (the image's command); ``Z`` (zombie) or ``X`` (dead) is not."""
    with open("/proc/1/stat", encoding="ascii") as stat:
        state = stat.read().rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def kafka_reachable() -> bool:
    bootstrap = os.environ.get("LEADFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=TIMEOUT):
                return True
        except OSError:
            continue
    return False


def redis_answers() -> bool:
    from redis import Redis
    from redis.exceptions import RedisError

    url = os.environ.get("LEADFLOW_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        client = Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        return bool(client.ping())
    except RedisError:
        return False


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "live":
        return 0 if live() else 1
    if mode == "ready":
        return 0 if live() and kafka_reachable() and redis_answers() else 1
    print(f"usage: {argv[0]} live|ready", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
