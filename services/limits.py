"""The process's own limits, raised where a long-running service needs them.

A gateway holds one file descriptor per visitor socket. With the usual soft
open-files limit of 1,024 a process stops accepting at about a thousand
sockets (``Too many open files``, and its health endpoints on the same
listener become unreachable), while the hard limit is usually far higher.
Every long-running service raises its soft limit to the hard limit at start
and logs what it got; compose and the Kubernetes manifests set the hard one.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

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
