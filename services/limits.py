"""The process's own limits, raised where a long-running service needs them.

A gateway holds one file descriptor per visitor socket. With the usual soft
open-files limit of 1,024 a process stops accepting at about a thousand
sockets (``Too many open files``, and its health endpoints on the same
listener become unreachable), while the hard limit is usually far higher.
Every long-running service raises its soft limit to the hard limit at start
and logs what it got; compose and the Kubernetes manifests set the hard one.

Numpy's BLAS is pinned to one thread (:func:`one_blas_thread`) by every entry
point and by the simulator, before numpy loads. The listen backlog a gateway asks
for is logged against the kernel's cap (:func:`listen_backlog`). The cyclic
garbage collector is tuned at the same moment (:func:`tune_collector`): what is
alive once a service is composed stays alive, and young collections run far less
often than CPython's default.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("leadflow.limits")


@dataclass(frozen=True, slots=True)
class OpenFiles:
    soft: int
    hard: int
    before: int


def _finite(value: int, fallback: int) -> int:
    return fallback if value == resource.RLIM_INFINITY else value


def raise_open_files(service: str) -> OpenFiles:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (an unlimited hard
    limit: as high as the kernel takes, tried from 1,048,576 down); log the
    capacity. Never fails the start: a refusal leaves the limit as it was."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = before
    targets = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 1 << 19, 1 << 16]
    for target in targets:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        soft = target
        break
    got = OpenFiles(_finite(soft, 1 << 20), _finite(hard, 1 << 20), _finite(before, 1 << 20))
    log.info(
        "open files: %d (was %d, hard limit %d)",
        got.soft,
        got.before,
        got.hard,
        extra={"service": service, "open_files": got.soft, "open_files_hard": got.hard},
    )
    return got


BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread(environ: MutableMapping[str, str] = os.environ) -> None:
    """Pin numpy's BLAS to one thread unless the operator set a number; call it
    before numpy is imported (the library reads the variables when it loads).

    The policy's learner multiplies small matrices (a few dozen weights) once per
    outcome: OpenBLAS's default of one thread per core only makes the threads wait
    for each other. On a busy host a learner step took about 40 times longer (831
    ms against 20 ms in a micro-benchmark), and two simulations started together
    took 351 and 379 s where one alone takes 15 s."""
    for name in BLAS_THREADS:
        environ.setdefault(name, "1")


SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def somaxconn(path: Path = SOMAXCONN) -> int | None:
    """The kernel's cap on a listen backlog; None where it cannot be read (not
    Linux, or no /proc): then a backlog is taken as asked."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def listen_backlog(service: str, requested: int, cap_file: Path = SOMAXCONN) -> int:
    """Log the listen backlog a service asks for and what the kernel grants (it
    caps it at ``net.core.somaxconn``); return the request, for ``run_app``.

    Why it matters: after a gateway dies, its visitors reconnect to the others
    within a second or two. Connections beyond the backlog are not queued: their
    SYNs are dropped and retried after 1, 3, 7 s. In the 100k benchmark's
    failover (19,000 visitors onto 6 gateways) aiohttp's default of 128
    overflowed 1,739 times (``nstat`` TcpExtListenOverflows), 4,096 not once."""
    cap = somaxconn(cap_file)
    granted = requested if cap is None else min(requested, cap)
    level = logging.WARNING if granted < requested else logging.INFO
    log.log(
        level,
        "listen backlog: %d%s",
        granted,
        "" if granted == requested else f" (asked {requested}; raise net.core.somaxconn)",
        extra={"service": service, "listen_backlog": granted},
    )
    return requested


GC_GEN0_ENV = "LEADFLOW_GC_GEN0"
GC_GEN0_DEFAULT = 50_000
"""Allocations (net, of objects the collector tracks) between two young-generation
collections. CPython's default, 700, made ``leadflow serve`` collect about 80 times
a second at 2,000 presses/s, and each of the collections that reach the oldest
generation walks every live object (~200,000: the flows, the policy's ledgers,
the cached states): 1.7 s of 30 in the collector. At 50,000: 14 collections in
the same run, +8% presses/s (bench/README.md). Garbage without cycles is freed at
once either way (reference counting); only cyclic garbage waits longer."""


def collector_threshold(environ: Mapping[str, str]) -> int:
    """``LEADFLOW_GC_GEN0`` (default 50,000; 700 is CPython's own), checked."""
    raw = environ.get(GC_GEN0_ENV, "").strip() or str(GC_GEN0_DEFAULT)
    if not raw.isdigit() or not 100 <= int(raw) <= 10_000_000:
        raise ValueError(f"{GC_GEN0_ENV} must be a whole number from 100 to 10000000, not {raw!r}")
    return int(raw)


def tune_collector(service: str, gen0: int) -> None:
    """Collect once, move everything alive now (the modules, the flows, the
    composed app) out of the collector's sight for good (``gc.freeze``: it is
    never garbage), and set the young generation's threshold to ``gen0``."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(gen0, older, oldest)
    log.info(
        "garbage collector: young generation every %d allocations, %d objects frozen",
        gen0,
        gc.get_freeze_count(),
        extra={"service": service},
    )
