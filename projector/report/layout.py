"""Where the flow's nodes go in the drop-off drawing, pure: layers by BFS depth
from the start node (top to bottom); nodes the search never reaches get a last
layer. Within a layer, nodes are ordered by the mean x of their predecessors
in the layers above (the barycenter heuristic, one sweep down: fewer crossing
arrows), ties in the order the search met them."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Layout:
    """``positions[node] = (x, y)``: x centred on 0, one unit apart; y = -layer."""

    positions: Mapping[str, tuple[float, float]]
    layers: int
    width: int  # nodes in the widest layer


def depths(start: str, successors: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """BFS depth of every node reachable from ``start``."""
    if start not in successors:
        return {}
    depth = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in successors.get(node, ()):
            if target not in depth:
                depth[target] = depth[node] + 1
                queue.append(target)
    return depth


def layered(start: str, successors: Mapping[str, Sequence[str]]) -> Layout:
    depth = depths(start, successors)
    last = max(depth.values(), default=-1) + 1
    for node in successors:
        depth.setdefault(node, last)
    layers: dict[int, list[str]] = {}
    for node, d in depth.items():  # BFS order, then unreachable nodes in given order
        layers.setdefault(d, []).append(node)
    predecessors: dict[str, list[str]] = {}
    for source, targets in successors.items():
        for target in targets:
            predecessors.setdefault(target, []).append(source)
    positions: dict[str, tuple[float, float]] = {}
    for d in sorted(layers):
        nodes = sorted(layers[d], key=lambda n: _barycenter(n, predecessors, positions))
        for index, node in enumerate(nodes):
            positions[node] = (index - (len(nodes) - 1) / 2.0, -float(d))
    return Layout(
        positions=positions,
        layers=len(layers),
        width=max((len(nodes) for nodes in layers.values()), default=0),
    )


def _barycenter(
    node: str,
    predecessors: Mapping[str, Sequence[str]],
    placed: Mapping[str, tuple[float, float]],
) -> float:
    """Mean x of the node's already placed predecessors (0 when none is);
    ``sorted`` is stable, so ties keep the search's order."""
    xs = [placed[p][0] for p in predecessors.get(node, ()) if p in placed]
    return sum(xs) / len(xs) if xs else 0.0
