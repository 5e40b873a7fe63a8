"""The export pipeline: events of a selection -> columns -> Arrow tables -> a sink.

Shared by ``leadflow export`` (Parquet or JSONL files) and
:func:`projector.export.load_events` (a DataFrame), so both hold the very same
columns and values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from projector.export.arrow import to_table
from projector.export.columns import Columns, Conversation
from projector.export.leads import LeadKeys, open_leads
from projector.export.sinks import Sink
from projector.export.source import Origin, Progress, Selection, iter_events
from schemas.events import Event

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
        self.row_group = row_group
        self.columns = Columns(include_pii=keys is not None)
        self.conversations: dict[str, Conversation] = {}
        self.events = 0

    async def add(self, events: Sequence[Event]) -> None:
        leads = None if self.keys is None else await open_leads(events, self.keys)
        self.columns.add(events, self.conversations, leads)
        self.events += len(events)
        if len(self.columns) >= self.row_group:
            self.flush()

    def flush(self) -> None:
        if len(self.columns):
            self.sink.write(to_table(self.columns.take(), self.columns.include_pii))


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
        async for batch in iter_events(origin, selection, progress):
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
