"""Chart and table labels: plain text, no matplotlib (cheap to import and test)."""

from __future__ import annotations

from collections.abc import Sequence


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def path_label(nodes: Sequence[str] | None, paths: int) -> str:
    return " → ".join(nodes) if nodes is not None else f"{paths:,} other paths"


def short_path(nodes: Sequence[str] | None, paths: int, limit: int = 64) -> str:
    """A path's label within ``limit`` characters: its first node, then as many
    of its last nodes as fit (paths share their beginnings, not their ends)."""
    full = path_label(nodes, paths)
    if nodes is None or len(full) <= limit:
        return full
    tail: list[str] = []
    for node in reversed(nodes[1:]):
        label = " → ".join((nodes[0], "…", node, *tail))
        if len(label) > limit and tail:
            break
        tail.insert(0, node)
    return short(" → ".join((nodes[0], "…", *tail)), limit)
