"""The export pipeline: selected events -> columns -> Arrow tables -> a sink.

Shared by ``leadflow export`` (Parquet or JSONL files) and
:func:`projector.export.load_events` (a DataFrame), so both hold the very same
columns and values. Events travel as checked objects, not dataclasses
(:mod:`projector.export.raw`); a batch whose columns cannot be built is
decoded the generic way to name the record at fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NoReturn

import pyarrow as pa

from projector.export.arrow import to_table
from projector.export.columns import Conversation
from projector.export.leads import LeadKeys, open_leads
from projector.export.raw import RawBatch, decode
from projector.export.raw_columns import raw_to_columns
from projector.export.sinks import Sink
from projector.export.source import Origin, Progress, Selection, iter_raw

ROW_GROUP = 100_000


@dataclass(frozen=True, slots=True)
class ExportResult:
    events: int
    conversations: int
    seconds: float


class _Pipeline:
    def __init__(self, sink: Sink, keys: LeadKeys | None, row_group: int) -> None:
        self.sink = sink
        self.keys = keys
        self.pii = keys is not None
        self.row_group = row_group
        self.tables: list[Any] = []
        self.pending = 0
        self.conversations: dict[str, Conversation] = {}
        self.events = 0

    async def add(self, batch: RawBatch) -> None:
        leads = None if self.keys is None else await open_leads(batch.objs, self.keys)
        try:
            table = to_table(
                raw_to_columns(batch.objs, self.conversations, self.pii, leads), self.pii
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            _explain(batch, exc)
        self.tables.append(table)
        self.pending += table.num_rows
        self.events += table.num_rows
        if self.pending >= self.row_group:
            self.flush()

    def flush(self) -> None:
        """Write what is pending as one row group."""
        if self.tables:
            self.sink.write(pa.concat_tables(self.tables))
            self.tables, self.pending = [], 0


def _explain(batch: RawBatch, exc: Exception) -> NoReturn:
    """A field of the wrong type or missing (Arrow or a lookup said so): the
    generic decoder names the record; if it finds none, ``exc`` stands."""
    decode(batch)
    raise exc


async def export_events(
    origin: Origin,
    selection: Selection,
    sink: Sink,
    *,
    keys: LeadKeys | None = None,
    progress: Progress | None = None,
    row_group: int = ROW_GROUP,
) -> ExportResult:
    """Write the selected events to ``sink``; with ``keys``, open the leads
    (the ``lead`` and ``lead_erased`` columns). The sink is finished on success
    and aborted on any error (an unreadable record, a lost connection)."""
    started = time.perf_counter()
    pipeline = _Pipeline(sink, keys, row_group)
    try:
        async for batch in iter_raw(origin, selection, progress):
            await pipeline.add(batch)
        pipeline.flush()
    except BaseException:
        sink.abort()
        raise
    sink.finish()
    return ExportResult(
        events=pipeline.events,
        conversations=len(pipeline.conversations),
        seconds=time.perf_counter() - started,
    )
