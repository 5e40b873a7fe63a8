"""Every entry point pins BLAS to one thread unless the operator chose a number
(app/__init__.py says why): checked in a fresh interpreter, as a service starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import {module}, numpy\n"
    "from threadpoolctl import threadpool_info\n"
    "print(max(p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'))\n"
)


def blas_threads(module: str = "app", **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_a_service_process_uses_one_blas_thread_by_default() -> None:
    assert blas_threads() == 1


@pytest.mark.parametrize("module", ["policy.sim", "bench.policy"])
def test_the_simulator_and_the_policy_benchmarks_use_one_blas_thread(module: str) -> None:
    assert blas_threads(module) == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS starts one thread")
def test_without_the_pin_openblas_starts_a_thread_per_core() -> None:
    """The control: a process that imports numpy alone gets more than one."""
    assert blas_threads("os") > 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS starts one thread")
def test_an_operators_choice_is_kept() -> None:
    assert blas_threads(OPENBLAS_NUM_THREADS="2") == 2
