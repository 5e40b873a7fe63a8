"""Sample the server with ``py-spy record`` during a run (``--py-spy-dir``)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

Stop = Callable[[], None]


def start_py_spy(pid: int, out_dir: Path, label: str) -> Stop:
    """Start sampling ``pid`` into ``out_dir/server-<label>.txt``; return what stops it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / f"server-{label}.py-spy.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                *("py-spy", "record", "--pid", str(pid), "--format", "raw"),
                *("--rate", "250", "--threads", "--nonblocking"),
                *("--output", str(out_dir / f"server-{label}.txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return stop
