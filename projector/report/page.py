"""The report as one self-contained HTML page, pure: inline CSS, PNGs as
``data:`` URIs, no script, no external font or URL. Every text (flow texts,
labels, ids) goes through :func:`html.escape`."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from projector.report.context import Context
from projector.report.markup import conversion, document, when
from projector.report.model import FunnelReport
from projector.report.sections import sections
from projector.report.stats import LEVEL


def _header(report: FunnelReport | None, ctx: Context, version: int | None) -> list[str]:
    name = report.title if report is not None and report.title else ctx.flow_id
    facts: list[tuple[str, str]] = [
        ("flow", f"{ctx.flow_id}" + (f" version {version}" if version is not None else "")),
        ("selected", f"conversations started from {when(ctx.since)} to {when(ctx.until)}"),
        ("read from", ctx.origin),
    ]
    if ctx.site_id:
        facts.append(("site", ctx.site_id))
    others = {v: n for v, n in ctx.versions.items() if v != version}
    if others:
        listed = ", ".join(f"version {v}: {n:,} conversations" for v, n in sorted(others.items()))
        facts.append(("other versions in range (not shown)", listed))
    if report is not None:
        facts += [
            ("first / last start", f"{when(report.first_start)} / {when(report.last_start)}"),
            ("conversations", f"{report.overall.n:,}"),
            ("completed", f"{report.completed:,}"),
            ("leads", f"{report.overall.k:,}"),
            (f"conversion ({LEVEL:.0%} interval)", conversion(report.overall)),
            ("refused commands", f"{report.rejected:,}"),
        ]
    if report is not None and not report.has_flow:
        facts.append(("note", "flow file not found: node ids and observed edges only"))
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return [f"<h1>Funnel: {escape(name)}</h1>", f"<dl>{items}</dl>"]


def empty_page(ctx: Context, version: int | None) -> str:
    what = "no conversations in this range"
    if version is not None and ctx.versions:
        what = f"no conversations of version {version} in this range"
    body = [*_header(None, ctx, version), f'<p class="empty">{escape(what.capitalize())}.</p>']
    return document(f"Funnel {ctx.flow_id}: {what}", [*body, _footer(ctx)])


def _footer(ctx: Context) -> str:
    return (
        '<p class="note">Each conversation counts once per node, edge, button and path, '
        "however often it loops (the read model's funnel). Drop-off at a node = entered "
        "- left. Conversion = conversations that captured a lead, whenever they did. "
        f"Intervals: equal-tailed {LEVEL:.0%} credible intervals of Beta(1 + leads, 1 + "
        f"conversations - leads). Generated {escape(when(ctx.generated_at))}.</p>"
    )


def report_page(report: FunnelReport, ctx: Context, images: Mapping[str, bytes]) -> str:
    body = _header(report, ctx, report.flow_version) + sections(report, images) + [_footer(ctx)]
    return document(f"Funnel {report.flow_id} v{report.flow_version}", body)
