"""Where exported events come from: the shared source of ``leadflow export``,
``leadflow report`` and the off-policy evaluation.

:func:`iter_events` reads the embedded SQLite log or the Kafka ``events`` topic
without disturbing either (read-only SQLite; a Kafka consumer with no group
that commits nothing) and yields the events of the selected conversations
(:class:`Selection`; semantics in ``docs/analytics.md``). A record this reader
cannot decode stops it with :class:`UnreadableLog`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from projector.export.errors import NoEventLog, UnreadableLog
from projector.export.raw import RawBatch, decode
from projector.export.selection import Cohort, Selection
from schemas.events import Event
from services.distributed.settings import KafkaSettings

__all__ = [
    "KafkaOrigin",
    "NoEventLog",
    "Origin",
    "Selection",
    "SqliteOrigin",
    "UnreadableLog",
    "add_source_arguments",
    "iter_events",
    "iter_raw",
    "origin_and_selection",
]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SqliteOrigin:
    """The embedded mode's log: ``events.db`` in ``data_dir``."""

    data_dir: Path


@dataclass(frozen=True, slots=True)
class KafkaOrigin:
    """The distributed mode's ``events`` topic."""

    settings: KafkaSettings


Origin = SqliteOrigin | KafkaOrigin


async def iter_raw(
    origin: Origin, selection: Selection, progress: Progress | None = None
) -> AsyncIterator[RawBatch]:
    """:func:`iter_events` as event objects of a known type and version, not yet
    dataclasses (the export's fast path, :mod:`projector.export.raw`)."""
    cohort = Cohort(selection)
    if isinstance(origin, SqliteOrigin):
        from projector.export.sqlite_reader import iter_sqlite

        async for batch in iter_sqlite(origin.data_dir, cohort, selection.since, progress):
            yield batch
    else:
        from projector.export.kafka_reader import iter_kafka

        async for batch in iter_kafka(origin.settings, cohort, selection.since, progress):
            yield batch


async def iter_events(
    origin: Origin, selection: Selection, progress: Progress | None = None
) -> AsyncIterator[Sequence[Event]]:
    """Batches of decoded events of the selected conversations; within a
    conversation events come in seq order (conversations interleave).

    ``progress(done, total)`` counts log rows (SQLite) or offsets (Kafka)
    scanned, not events kept. Raises :class:`NoEventLog` when there is no log,
    :class:`UnreadableLog` at the first record this reader cannot decode."""
    async for batch in iter_raw(origin, selection, progress):
        yield decode(batch)


def _parse_time(flag: str) -> Callable[[str], float]:
    from services.timerange import parse_since

    def parse(raw: str) -> float:
        try:
            return parse_since(raw)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(
                f"{flag} {raw!r}: expected unix seconds or an ISO 8601 date/time"
            ) from exc

    return parse


def add_source_arguments(parser: argparse.ArgumentParser, *, flow_required: bool = False) -> None:
    """``--data-dir``, ``--kafka``, ``--from``, ``--to``, ``--flow``, ``--site``.

    ``flow_required``: the command is about one flow (a funnel report), so
    ``--flow`` names it as well as filtering the conversations."""
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"),
        help="embedded mode: the data directory holding events.db (default: %(default)s)",
    )
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="read the Kafka events topic instead (settings from the environment)",
    )
    parser.add_argument(
        "--from",
        dest="since",
        type=_parse_time("--from"),
        help="conversations started at/after this time (unix seconds or ISO 8601, UTC)",
    )
    parser.add_argument(
        "--to",
        dest="until",
        type=_parse_time("--to"),
        help="conversations started before this time (their later events are included)",
    )
    parser.add_argument(
        "--flow",
        dest="flow_id",
        required=flow_required,
        help="the flow (required)" if flow_required else "only conversations of this flow",
    )
    parser.add_argument("--site", dest="site_id", help="only conversations of this site")


def origin_and_selection(args: argparse.Namespace) -> tuple[Origin, Selection]:
    """The origin and selection the :func:`add_source_arguments` flags name."""
    origin: Origin = (
        KafkaOrigin(KafkaSettings.from_env()) if args.kafka else SqliteOrigin(Path(args.data_dir))
    )
    selection = Selection(
        since=args.since, until=args.until, flow_id=args.flow_id, site_id=args.site_id
    )
    return origin, selection
