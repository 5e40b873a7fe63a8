"""The report's content, pure: rows and figures' data from one version's
:class:`~projector.report.fold.FunnelStats` and its flow (texts, labels and
the graph come from the flow file; without it, node ids and observed edges)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from projector.report.fold import Edge, FunnelStats
from projector.report.layout import depths
from projector.report.stats import Durations, PathRow, Rate, durations, rate, top_paths
from schemas.flow import Flow, NodeKind

TOP_PATHS = 12


@dataclass(frozen=True, slots=True)
class NodeRow:
    id: str
    kind: str
    text: str
    entered: int
    left: int
    conversion: Rate  # leads among the conversations that entered the node
    went_back: int = 0  # conversations that went back to it to change its answer

    @property
    def stopped(self) -> int:
        """Drop-off: entered - left (at an end node, the conversations that ended there)."""
        return self.entered - self.left

    @property
    def stopped_share(self) -> float:
        return self.stopped / self.entered if self.entered else 0.0


@dataclass(frozen=True, slots=True)
class EdgeRow:
    source: str
    target: str
    via: str  # the buttons that lead along it, "(next)" for a message or form
    conversion: Rate  # n: conversations along the edge, k: of which leads


@dataclass(frozen=True, slots=True)
class CandidateRow:
    node: str
    button: str
    label: str
    candidate: str
    default: bool
    share: float  # of the decisions at this button
    conversion: Rate


@dataclass(frozen=True, slots=True)
class ButtonRow:
    node: str
    button: str
    label: str
    conversion: Rate


@dataclass(frozen=True, slots=True)
class SegmentRow:
    dimension: str  # "source" | "device"
    value: str
    conversion: Rate


@dataclass(frozen=True, slots=True)
class FunnelReport:
    flow_id: str
    flow_version: int
    title: str
    start: str
    has_flow: bool  # the flow file was found (texts and the authored graph)
    overall: Rate
    completed: int
    rejected: int
    first_start: float
    last_start: float
    nodes: tuple[NodeRow, ...]
    successors: Mapping[str, tuple[str, ...]]
    edges: tuple[EdgeRow, ...]
    candidates: tuple[CandidateRow, ...]
    buttons: tuple[ButtonRow, ...]
    paths: tuple[PathRow, ...]
    durations: Durations
    segments: tuple[SegmentRow, ...]


def build_report(stats: FunnelStats, flow: Flow | None, top: int = TOP_PATHS) -> FunnelReport:
    start = flow.start if flow is not None else _observed_start(stats)
    successors = _successors(stats, flow)
    if flow is None:  # nodes in BFS order from the start, then the rest by id
        depth = depths(start, successors)
        order = sorted(successors, key=lambda n: (n not in depth, depth.get(n, 0), n))
        successors = {node: successors[node] for node in order}
    return FunnelReport(
        flow_id=stats.flow_id,
        flow_version=stats.flow_version,
        title=flow.title if flow is not None else "",
        start=start,
        has_flow=flow is not None,
        overall=rate(stats.leads, stats.started),
        completed=stats.completed,
        rejected=stats.rejected,
        first_start=stats.first_start,
        last_start=stats.last_start,
        nodes=_nodes(stats, flow, successors),
        successors=successors,
        edges=_edges(stats, flow, successors),
        candidates=_candidates(stats, flow),
        buttons=_buttons(stats, flow),
        paths=tuple(top_paths(stats.paths, top)),
        durations=durations(stats.lead_seconds),
        segments=_segments(stats),
    )


def _observed_start(stats: FunnelStats) -> str:
    firsts: dict[str, int] = {}
    for path, (n, _) in stats.paths.items():
        if path:
            firsts[path[0]] = firsts.get(path[0], 0) + n
    return max(sorted(firsts), key=lambda node: firsts[node], default="")


def _successors(stats: FunnelStats, flow: Flow | None) -> dict[str, tuple[str, ...]]:
    """The authored graph, plus any edge the log holds that it lacks."""
    out: dict[str, list[str]] = {}
    if flow is not None:
        for node in flow.nodes.values():
            out[node.id] = list(dict.fromkeys(node.successors()))
    for node_id in stats.entered:
        out.setdefault(node_id, [])
    for a, b in sorted(stats.edges):
        targets = out.setdefault(a, [])
        if b not in targets:
            targets.append(b)
        out.setdefault(b, [])
    return {node: tuple(targets) for node, targets in out.items()}


def _nodes(
    stats: FunnelStats, flow: Flow | None, successors: Mapping[str, Sequence[str]]
) -> tuple[NodeRow, ...]:
    rows = []
    for node_id in successors:
        node = flow.nodes.get(node_id) if flow is not None else None
        entered = stats.entered.get(node_id, 0)
        rows.append(
            NodeRow(
                id=node_id,
                kind=str(node.kind) if node is not None else "",
                text=node.text if node is not None else "",
                entered=entered,
                left=stats.left.get(node_id, 0),
                conversion=rate(stats.converted.get(node_id, 0), entered),
                went_back=stats.went_back.get(node_id, 0),
            )
        )
    return tuple(rows)


def _via(flow: Flow | None, edge: Edge) -> str:
    node = flow.nodes.get(edge[0]) if flow is not None else None
    if node is None:
        return ""
    if node.kind in (NodeKind.MESSAGE, NodeKind.LEAD_FORM):
        return "(next)" if node.next == edge[1] else ""
    return ", ".join(b.label for b in node.buttons if edge[1] in b.next)


def _edges(
    stats: FunnelStats, flow: Flow | None, successors: Mapping[str, Sequence[str]]
) -> tuple[EdgeRow, ...]:
    edges = [(a, b) for a, targets in successors.items() for b in targets]
    return tuple(
        EdgeRow(
            a,
            b,
            _via(flow, (a, b)),
            rate(stats.edges_converted.get((a, b), 0), stats.edges.get((a, b), 0)),
        )
        for a, b in edges
    )


def _label(flow: Flow | None, node_id: str, button_id: str) -> str:
    node = flow.nodes.get(node_id) if flow is not None else None
    button = node.button(button_id) if node is not None else None
    return button.label if button is not None else button_id


def _decision_points(stats: FunnelStats, flow: Flow | None) -> dict[tuple[str, str], list[str]]:
    points: dict[tuple[str, str], list[str]] = {}
    if flow is not None:
        for node in flow.nodes.values():
            for button in node.buttons:
                if button.is_decision_point:
                    points[node.id, button.id] = list(button.next)
    for node_id, button_id, chosen in sorted(stats.decisions):
        candidates = points.setdefault((node_id, button_id), [])
        if chosen not in candidates:
            candidates.append(chosen)
    return points


def _candidates(stats: FunnelStats, flow: Flow | None) -> tuple[CandidateRow, ...]:
    rows = []
    for (node_id, button_id), candidates in _decision_points(stats, flow).items():
        tallies = [stats.decisions.get((node_id, button_id, c), (0, 0)) for c in candidates]
        total = sum(n for n, _ in tallies)
        for index, (candidate, (n, k)) in enumerate(zip(candidates, tallies, strict=True)):
            rows.append(
                CandidateRow(
                    node=node_id,
                    button=button_id,
                    label=_label(flow, node_id, button_id),
                    candidate=candidate,
                    default=index == 0 and flow is not None,
                    share=n / total if total else 0.0,
                    conversion=rate(k, n),
                )
            )
    return tuple(rows)


def _buttons(stats: FunnelStats, flow: Flow | None) -> tuple[ButtonRow, ...]:
    keys = list(stats.buttons)
    if flow is not None:
        authored = [(node.id, b.id) for node in flow.nodes.values() for b in node.buttons]
        keys = authored + [key for key in sorted(keys) if key not in set(authored)]
    return tuple(
        ButtonRow(node, button, _label(flow, node, button), rate(k, n))
        for node, button in keys
        for n, k in (stats.buttons.get((node, button), (0, 0)),)
    )


def _segments(stats: FunnelStats) -> tuple[SegmentRow, ...]:
    ranked = sorted(
        stats.segments.items(),
        key=lambda item: (item[0][0] != "source", -item[1][0], item[0][1]),
    )
    return tuple(SegmentRow(dim, value, rate(k, n)) for (dim, value), (n, k) in ranked)
