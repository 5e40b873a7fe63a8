"""The fit worker: one spawned process that imports PyMC and runs fits.

The serving process never imports PyMC. The worker runs at a lower CPU priority,
exits when its parent is gone (kill -9 included), and is replaced when it dies or
a fit times out (:class:`ProcessFitter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from policy.fit_request import FitFailed, FitReport, FitRequest
from policy.settings import FitSettings
from policy.snapshot import decode_snapshot, encode_snapshot


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (kill -9 included): a fit must not outlive it."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _worker_init(parent: int) -> None:
    with contextlib.suppress(OSError):
        os.nice(10)  # serving comes first
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    for name in ("pymc", "pytensor", "arviz"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


def _warm() -> None:
    import policy.model  # noqa: F401  (PyMC's import takes seconds: pay it before a fit)


def run_fit(request: FitRequest) -> tuple[bytes | None, dict[str, Any], str | None, float]:
    """In the worker process: fit, and return the snapshot encoded (checked to travel)."""
    from policy.model import fit_flow

    started = time.perf_counter()
    result = fit_flow(
        request.flow_id,
        request.flow_version,
        request.counts,
        version=request.version,
        seed=request.seed,
        guardrails=request.guardrails,
        points=request.points,
        **request.options,  # type: ignore[arg-type]
    )
    seconds = time.perf_counter() - started
    data = None if result.snapshot is None else encode_snapshot(result.snapshot)
    return data, _plain(result.diagnostics), result.reason, seconds


def _plain(value: Any) -> Any:
    """Diagnostics as JSON-friendly Python values (numpy scalars and arrays converted)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


class ProcessFitter:
    """Runs fits in one spawned worker process (PyMC is imported there, never in the
    serving process); the worker is started on first use and replaced when it dies or
    a fit times out."""

    def __init__(self, settings: FitSettings) -> None:
        self._settings = settings
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
        return self._pool

    def warm(self) -> None:
        """Start the worker and import PyMC in it now (the service does at start)."""
        self._executor().submit(_warm)

    async def __call__(self, request: FitRequest) -> FitReport:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor(), run_fit, request)
        try:
            data, diagnostics, reason, seconds = await asyncio.wait_for(
                future, self._settings.timeout_seconds
            )
        except TimeoutError:
            self.close()
            raise FitFailed(f"timed out after {self._settings.timeout_seconds:.0f} s") from None
        except BrokenProcessPool as exc:
            self.close()
            raise FitFailed(f"the fit worker died: {exc}") from None
        except ImportError as exc:
            raise FitFailed(f"cannot fit: {exc} (is PyMC installed?)") from None
        snapshot = None if data is None else decode_snapshot(data)
        return FitReport(snapshot, diagnostics, reason, seconds)

    def close(self) -> None:
        """Stop the worker now, even in the middle of a fit."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())  # no public way in 3.11
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()
