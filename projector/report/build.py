"""The report's shell: read the selected conversations' events, fold them,
draw, write one HTML file. Everything it calls is pure but the event source
and the final write.

Versions: a funnel is per flow version (node ids can change between versions),
so the report shows one version: ``version`` if given, else the newest version
seen in the range; the header lists the others with their conversation counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from projector.export.source import Origin, Selection, iter_events
from projector.report.context import Context
from projector.report.fold import FunnelFold, FunnelStats
from schemas.flow import Flow

FlowLookup = Callable[[str, int], Flow | None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Folded:
    versions: dict[int, FunnelStats]
    events: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Written:
    path: Path
    version: int | None
    conversations: int
    leads: int
    events: int
    read_fold_seconds: float
    render_seconds: float

    @property
    def seconds(self) -> float:
        return self.read_fold_seconds + self.render_seconds


async def fold_log(
    origin: Origin, selection: Selection, flow_id: str, progress: Progress | None = None
) -> Folded:
    """The funnel of every version of ``flow_id`` among the selected conversations."""
    began = time.perf_counter()
    fold = FunnelFold(flow_id)
    async for batch in iter_events(origin, selection, progress):
        fold.feed(batch)
    versions = fold.result()
    return Folded(versions, fold.events, time.perf_counter() - began)


def chosen_version(versions: Mapping[int, FunnelStats], wanted: int | None) -> int | None:
    """``wanted``, else the newest version seen (None for an empty range)."""
    if wanted is not None:
        return wanted
    return max(versions, default=None)


def render(
    versions: Mapping[int, FunnelStats], version: int | None, flows: FlowLookup, ctx: Context
) -> str:
    # Imported here, after the fold: matplotlib and scipy add a few hundred
    # thousand objects that every full garbage collection during the fold
    # would otherwise walk (about a third more time on 100,000 conversations).
    # An empty page has no charts: matplotlib only when there is a report.
    from projector.report.model import build_report
    from projector.report.page import empty_page, report_page

    stats = versions.get(version) if version is not None else None
    if stats is None or not stats.started:
        return empty_page(ctx, version)
    from projector.report.charts import report_charts

    report = build_report(stats, flows(stats.flow_id, stats.flow_version))
    return report_page(report, ctx, report_charts(report))


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


async def write_funnel_report(
    origin: Origin,
    selection: Selection,
    flows: FlowLookup,
    out: Path,
    version: int | None = None,
    origin_name: str = "",
    progress: Progress | None = None,
) -> Written:
    """Fold the log of ``selection.flow_id`` (required) and write the report to ``out``."""
    if selection.flow_id is None:
        raise ValueError("a funnel report needs a flow")
    folded = await fold_log(origin, selection, selection.flow_id, progress)
    began = time.perf_counter()
    ctx = Context(
        flow_id=selection.flow_id,
        since=selection.since,
        until=selection.until,
        site_id=selection.site_id,
        origin=origin_name,
        versions={v: s.started for v, s in folded.versions.items()},
        generated_at=time.time(),
    )
    shown = chosen_version(folded.versions, version)
    write_atomically(out, render(folded.versions, shown, flows, ctx))
    stats = folded.versions.get(shown) if shown is not None else None
    return Written(
        path=out,
        version=shown,
        conversations=stats.started if stats is not None else 0,
        leads=stats.leads if stats is not None else 0,
        events=folded.events,
        read_fold_seconds=folded.seconds,
        render_seconds=time.perf_counter() - began,
    )
