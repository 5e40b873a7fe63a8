"""Errors of the ``leadflow`` command, as a person can act on them.

Every error is one line on stderr, ``leadflow[ COMMAND]: what is wrong; what to
do``, and a non-zero exit status: 2 for usage and configuration (a flag, a
file, an address, a service that is not where the settings say), 1 for the
rest. Never a traceback: :func:`explain` turns what the command did not
expect into one line and exit 1, with the traceback only under
``LEADFLOW_LOG_LEVEL=debug``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import NoReturn

USAGE = 2
FAILED = 1
MAX_LISTED = 20


class CliError(Exception):
    """An error the command knows how to explain: ``message`` is the whole line
    (without the ``leadflow:`` prefix), ``status`` the exit status."""

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.message = one_line(message)
        self.status = status


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {one_line(message)}; see {self.prog} --help\n")


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined with ``; ``."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def listing(ids: Iterable[str]) -> str:
    """Ids sorted and comma-separated, the first :data:`MAX_LISTED` of them."""
    names = sorted(set(ids))
    if not names:
        return "none"
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown if more <= 0 else f"{shown} and {more} more"


def version() -> str:
    try:
        return metadata.version("leadflow")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def debug() -> bool:
    return os.environ.get("LEADFLOW_LOG_LEVEL", "").strip().lower() == "debug"


def fail(prog: str, error: CliError) -> int:
    print(f"{prog}: {error.message}", file=sys.stderr)
    return error.status


def check_directory(path: Path, what: str, fix: str) -> None:
    """Refuse a directory setting that names no directory."""
    if not path.exists():
        raise CliError(f"no {what} {path}; {fix}")
    if not path.is_dir():
        raise CliError(f"{path} is not a directory ({what}); {fix}")


def check_file(path: Path, what: str, fix: str) -> None:
    """Refuse a file setting that names no readable file."""
    if not path.exists():
        raise CliError(f"no {what} {path}; {fix}")
    if not path.is_file():
        raise CliError(f"{path} is not a file ({what}); {fix}")
    if not os.access(path, os.R_OK):
        raise CliError(f"cannot read the {what} {path} (permission denied); {fix}")


def known_failure(exc: BaseException) -> CliError | None:
    """The usual failures of a command that talks to files and services, explained;
    None for anything else."""
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError

    if isinstance(exc, KafkaConnectionError):
        return CliError(
            f"cannot reach Kafka at {_kafka()}; start it, or set KAFKA_BOOTSTRAP_SERVERS"
            " to where it runs"
        )
    if isinstance(exc, KafkaError):
        return CliError(f"Kafka at {_kafka()} refused: {exc}", FAILED)
    if isinstance(exc, RedisConnectionError):
        return CliError(
            f"cannot reach Redis at {_redis()}; start it, or set LEADFLOW_REDIS_URL to where"
            " it runs"
        )
    if isinstance(exc, RedisError):
        return CliError(f"Redis at {_redis()} refused: {exc}", FAILED)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return CliError(
            f"cannot listen: {one_line(str(exc))}; stop what uses that port, or choose"
            " another (LEADFLOW_PORT, or the service's own port setting)"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        return CliError(f"cannot use {exc.filename}: {reason}")
    return None


def explain(prog: str, exc: Exception) -> int:
    """The last resort: one line for any exception (and exit 1 unless it is a
    known failure); the traceback too under ``LEADFLOW_LOG_LEVEL=debug``."""
    if debug():
        traceback.print_exception(exc)
    known = known_failure(exc)
    if known is not None:
        return fail(prog, known)
    detail = one_line(str(exc)) or "(no message)"
    hint = (
        "please report it with the traceback above"
        if debug()
        else "please report it (LEADFLOW_LOG_LEVEL=debug shows the traceback)"
    )
    print(f"{prog}: unexpected error: {type(exc).__name__}: {detail}; {hint}", file=sys.stderr)
    return FAILED


def _kafka() -> str:
    try:
        from services.distributed.settings import KafkaSettings

        return KafkaSettings.from_env().bootstrap
    except Exception:
        return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "the configured address")


def _redis() -> str:
    try:
        from urllib.parse import urlsplit

        from services.distributed.settings import redis_url_from_env

        parts = urlsplit(redis_url_from_env())  # host and port only: never a password
        return f"{parts.hostname}:{parts.port or 6379}"
    except Exception:
        return "the configured address"
