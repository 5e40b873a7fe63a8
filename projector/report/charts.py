"""The report's charts as PNG bytes, drawn with matplotlib's Agg backend on
:class:`~matplotlib.figure.Figure` objects (no pyplot, no global state: safe
in threads and without a display). PNGs carry no metadata (no URL in them)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import PercentFormatter

from projector.report.labels import short, short_path
from projector.report.layout import layered
from projector.report.model import FunnelReport, NodeRow
from projector.report.stats import LEVEL, Durations, Rate

DPI = 100
BOX_W, BOX_H = 0.86, 0.62


def png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return out.getvalue()


def _node_label(row: NodeRow, terminal: bool) -> str:
    what = "ended" if terminal else "drop-off"
    return f"{short(row.id, 18)}\n{row.entered:,} in\n{what} {row.stopped_share:.0%}"


def _arrow(
    source: tuple[float, float], target: tuple[float, float], traffic: float
) -> FancyArrowPatch:
    """An edge: down from the bottom to the top of the next box; within a layer
    side to side; up (a loop back) from the top, curved."""
    (x1, y1), (x2, y2) = source, target
    if y2 < y1:
        start, end, rad = (x1, y1 - BOX_H / 2), (x2, y2 + BOX_H / 2), 0.0
    elif y2 == y1:
        side = BOX_W / 2 if x2 > x1 else -BOX_W / 2
        start, end, rad = (x1 + side, y1), (x2 - side, y2), 0.25
    else:
        start, end, rad = (x1, y1 + BOX_H / 2), (x2, y2 - BOX_H / 2), 0.35
    width = 0.4 + 5.0 * traffic
    return FancyArrowPatch(
        start,
        end,
        arrowstyle="-|>",
        mutation_scale=7 + 2.0 * width,
        linewidth=width,
        color="#4a6fa5" if traffic else "#c8c8c8",
        linestyle="-" if traffic else "--",
        alpha=0.7,
        connectionstyle=f"arc3,rad={rad}",
        shrinkA=0,
        shrinkB=1,
        zorder=1,
    )


def graph_png(report: FunnelReport) -> bytes:
    """Drop-off per node along the flow's graph: boxes shaded by drop-off,
    arrows as wide as their traffic."""
    layout = layered(report.start, report.successors)
    figure = Figure(figsize=(max(6.0, 1.9 * layout.width), max(3.0, 1.15 * layout.layers)))
    ax = figure.add_subplot()
    top = max((n for e in report.edges for n in (e.conversion.n,)), default=0) or 1
    for edge in report.edges:
        source, target = layout.positions[edge.source], layout.positions[edge.target]
        ax.add_patch(_arrow(source, target, edge.conversion.n / top))
    colours = matplotlib.colormaps["Reds"]
    terminals = {r.id for r in report.nodes if r.kind == "end" or not report.successors.get(r.id)}
    worst = max((r.stopped_share for r in report.nodes if r.id not in terminals), default=0.0)
    for row in report.nodes:
        x, y = layout.positions[row.id]
        terminal = row.id in terminals
        darkness = row.stopped_share / worst if worst else 0.0  # the flow's worst is darkest
        shade = "#e8eef7" if terminal else colours(0.05 + 0.6 * darkness)
        ax.add_patch(
            FancyBboxPatch(
                (x - BOX_W / 2, y - BOX_H / 2),
                BOX_W,
                BOX_H,
                boxstyle="round,pad=0.02",
                facecolor=shade,
                edgecolor="#333333",
                linewidth=0.8,
                zorder=2,
            )
        )
        label = _node_label(row, terminal)
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=3)
    xs = [x for x, _ in layout.positions.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 1.2)
    ax.set_ylim(-layout.layers + 0.4, 0.6)
    ax.set_axis_off()
    return png(figure)


def intervals_png(
    rows: Sequence[tuple[str, Rate]], title: str, reference: Rate | None = None
) -> bytes:
    """Conversion per row: the observed rate and its credible interval."""
    figure = Figure(figsize=(8.0, 0.9 + 0.28 * max(1, len(rows))))
    ax = figure.add_subplot()
    ys = list(range(len(rows)))[::-1]
    shown = [(y, r) for y, (_, r) in zip(ys, rows, strict=True) if r.n]
    # the interval is drawn apart from the observed rate, which can lie outside it
    lows, highs = [r.low for _, r in shown], [r.high for _, r in shown]
    ax.hlines([y for y, _ in shown], lows, highs, color="#1f4e79", linewidth=1.5)
    ax.plot([r.rate for _, r in shown], [y for y, _ in shown], "o", color="#1f4e79", ms=4)
    if reference is not None and reference.n:
        ax.axvline(reference.rate, color="#999999", linestyle=":", linewidth=1)
    ax.set_yticks(ys, [f"{short(label, 64)}  (n={r.n:,})" for label, r in rows], fontsize=7)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0.0, 1.0)
    ax.set_title(f"{title} ({LEVEL:.0%} credible intervals)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return png(figure)


def _unit(durations: Durations) -> tuple[str, float]:
    if durations.p90 < 120:
        return "seconds", 1.0
    if durations.p90 < 7200:
        return "minutes", 60.0
    return "hours", 3600.0


def durations_png(durations: Durations) -> bytes:
    """Time from start to lead: histogram and ECDF, median and p90 marked."""
    name, scale = _unit(durations)
    values = [v / scale for v in durations.values]
    figure = Figure(figsize=(9.0, 3.0))
    hist, ecdf = figure.subplots(1, 2)
    hist.hist(values, bins=min(40, max(5, len(values) // 20)), color="#4a6fa5")
    count = len(values)
    ecdf.step(values, [(i + 1) / count for i in range(count)], where="post", color="#1f4e79")
    ecdf.yaxis.set_major_formatter(PercentFormatter(1.0))
    for ax in (hist, ecdf):
        for q, label, style in ((durations.median, "median", "--"), (durations.p90, "p90", ":")):
            ax.axvline(q / scale, color="#c0392b", linestyle=style, linewidth=1, label=label)
        ax.set_xlabel(f"{name} from start to lead", fontsize=8)
        ax.tick_params(labelsize=7)
    hist.set_ylabel("leads", fontsize=8)
    ecdf.set_ylabel("share of leads", fontsize=8)
    ecdf.legend(fontsize=7)
    return png(figure)


def report_charts(report: FunnelReport) -> dict[str, bytes]:
    """Every chart of the report by name (a chart with nothing to show is left out)."""
    out = {"graph": graph_png(report)}
    edges = [(f"{e.source} → {e.target}", e.conversion) for e in report.edges if e.conversion.n]
    candidates = [
        (f"{c.node} · {c.label} → {c.candidate}", c.conversion) for c in report.candidates
    ]
    paths = [(short_path(p.nodes, p.paths), p.conversion) for p in report.paths]
    segments = [(f"{s.dimension}: {s.value}", s.conversion) for s in report.segments]
    for name, rows, title in (
        ("edges", edges, "Conversion per edge"),
        ("candidates", candidates, "Conversion per decision candidate"),
        ("paths", paths, "Conversion per path"),
        ("segments", segments, "Conversion per traffic source and device"),
    ):
        if rows:
            out[name] = intervals_png(rows, title, report.overall)
    if report.durations.count:
        out["durations"] = durations_png(report.durations)
    return out
