"""The report's sections as HTML fragments, pure (charts come in as PNG bytes)."""

from __future__ import annotations

from collections.abc import Mapping

from projector.report.labels import path_label
from projector.report.markup import conversion, duration, image, percent, table
from projector.report.model import FunnelReport
from projector.report.stats import LEVEL

Images = Mapping[str, bytes]


def _chart(images: Images, name: str, alt: str) -> list[str]:
    return [image(images[name], alt)] if name in images else []


def drop_off(report: FunnelReport, images: Images) -> list[str]:
    rows = [
        (
            n.id,
            n.kind,
            n.text,
            n.entered,
            n.left,
            n.stopped,
            percent(n.stopped_share) if n.entered else "",
            n.went_back,
            conversion(n.conversion),
        )
        for n in report.nodes
    ]
    head = ("node", "kind", "text", "entered", "left", "drop-off", "drop-off %", "went back")
    return [
        "<h2>Drop-off per node</h2>",
        '<p class="note">Layers by distance from the start node; boxes darker with '
        "more drop-off (the darkest: this flow's largest; end nodes: the conversations "
        "that ended there); arrows as wide as their traffic, dashed when unused. "
        "Went back: conversations that went back to the node to change its "
        "answer (they count as having left the node they went back from).</p>",
        *_chart(images, "graph", "the flow's graph with entered counts and drop-off"),
        table((*head, f"conversion ({LEVEL:.0%} interval)"), rows),
    ]


def edges(report: FunnelReport, images: Images) -> list[str]:
    edge_rows = [
        (e.source, e.target, e.via, e.conversion.n, e.conversion.k, conversion(e.conversion))
        for e in report.edges
    ]
    out = [
        "<h2>Conversion per edge</h2>",
        *_chart(images, "edges", "conversion per edge"),
        table(("from", "to", "via", "conversations", "leads", "conversion"), edge_rows),
    ]
    if report.candidates:
        rows = [
            (
                c.node,
                c.label,
                c.candidate + (" (default)" if c.default else ""),
                percent(c.share),
                c.conversion.n,
                c.conversion.k,
                conversion(c.conversion),
            )
            for c in report.candidates
        ]
        head = ("node", "button", "candidate", "share", "conversations", "leads", "conversion")
        out += [
            "<h3>Decision points</h3>",
            '<p class="note">Candidates the policy chose (EdgeChosen), each conversation '
            "counted once per candidate it was sent to.</p>",
            *_chart(images, "candidates", "conversion per decision candidate"),
            table(head, rows),
        ]
    button_rows = [
        (b.node, b.button, b.label, b.conversion.n, b.conversion.k, conversion(b.conversion))
        for b in report.buttons
    ]
    button_head = ("node", "button", "label", "conversations", "leads", "conversion")
    return [*out, "<h3>Buttons</h3>", table(button_head, button_rows)]


def paths(report: FunnelReport, images: Images) -> list[str]:
    rows = [
        (path_label(p.nodes, p.paths), p.conversion.n, p.conversion.k, conversion(p.conversion))
        for p in report.paths
    ]
    return [
        "<h2>Conversion per path</h2>",
        '<p class="note">A path is the sequence of nodes a conversation entered, '
        "also when it stopped part-way; the most frequent first, the rest grouped.</p>",
        *_chart(images, "paths", "conversion per path"),
        table(("path", "conversations", "leads", "conversion"), rows),
    ]


def time_to_lead(report: FunnelReport, images: Images) -> list[str]:
    d = report.durations
    if not d.count:
        return ["<h2>Time from start to lead</h2>", "<p>No leads in this range.</p>"]
    facts = f"{d.count:,} leads: median {duration(d.median)}, 90th percentile {duration(d.p90)}."
    return [
        "<h2>Time from start to lead</h2>",
        f"<p>{facts}</p>",
        *_chart(images, "durations", "time from start to lead"),
    ]


def segments(report: FunnelReport, images: Images) -> list[str]:
    rows = [
        (s.dimension, s.value, s.conversion.n, s.conversion.k, conversion(s.conversion))
        for s in report.segments
    ]
    return [
        "<h2>Traffic source and device</h2>",
        '<p class="note">Source as the policy derives it from UTM parameters and the '
        "referrer (direct, search, paid, social, email, other).</p>",
        *_chart(images, "segments", "conversion per traffic source and device"),
        table(("split", "segment", "conversations", "leads", "conversion"), rows),
    ]


def sections(report: FunnelReport, images: Images) -> list[str]:
    out: list[str] = []
    for section in (drop_off, edges, paths, time_to_lead, segments):
        out += section(report, images)
    return out
