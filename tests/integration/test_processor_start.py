"""A processor whose start fails says why and exits (it used to sit idle, unready,
with the error unseen until SIGTERM: seen when its HTTP port was taken)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.integration.distributed_fixtures import new_cluster


def test_a_processor_that_cannot_serve_http_logs_why_and_exits(
    kafka_bootstrap: str, session_redis_url: str, tmp_path: Path
) -> None:
    cluster = new_cluster(kafka_bootstrap, session_redis_url, tmp_path)
    taken = socket.socket()
    try:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        processor = cluster.processor()
        processor.port = taken.getsockname()[1]
        processor.env["LEADFLOW_PROCESSOR_HTTP_PORT"] = str(processor.port)
        processor.start()
        deadline = time.monotonic() + 60
        while processor.proc is not None and processor.proc.poll() is None:
            assert time.monotonic() < deadline, processor.log_text()[-2000:]
            time.sleep(0.2)
        assert processor.proc is not None and processor.proc.returncode == 1
        assert "the processor could not start" in processor.log_text()
        assert "address already in use" in processor.log_text()
    finally:
        taken.close()
        cluster.stop()
