"""The semantic checks of a flow's graph, run once its structure is valid.

The JSON Schema (:mod:`schemas.flow_structure`) cannot see across nodes, so
this is where a flow is checked as the graph a conversation walks: ids are
unique and every ``next`` names a node, every node is reachable from the start
(or the idle nudge) and can still reach an end, message nodes never
auto-advance forever or past the runtime's limit, texts and labels fit the
widget, and a lead form can reach the lead. The checks of format v2 (:mod:`schemas.flow_checks`)
and of timers (:mod:`schemas.flow_timers`) run from here too, so that
:func:`semantic_errors` is every semantic problem of a flow, each a
:class:`~schemas.flow_errors.FlowError`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence

from schemas.flow import MAX_AUTO_ADVANCE, Flow, Node, NodeKind
from schemas.flow_checks import template_problems, v2_problems, variable_types
from schemas.flow_errors import FlowError
from schemas.flow_limits import MAX_LABEL_CHARS, MAX_TEXT_CHARS
from schemas.flow_timers import timer_problems


def _duplicates(values: Iterable[str]) -> list[str]:
    return [value for value, count in Counter(values).items() if count > 1]


def _reachable(start: str, nodes: Mapping[str, Node]) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for target in nodes[queue.popleft()].successors():
            if target in nodes and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def _can_finish(nodes: Mapping[str, Node]) -> set[str]:
    """Nodes from which some ``end`` node is reachable (reverse BFS from the ends)."""
    predecessors: dict[str, set[str]] = {node_id: set() for node_id in nodes}
    for node in nodes.values():
        for target in node.successors():
            if target in predecessors:
                predecessors[target].add(node.id)
    done = {n.id for n in nodes.values() if n.kind is NodeKind.END}
    queue = deque(done)
    while queue:
        for pred in predecessors[queue.popleft()]:
            if pred not in done:
                done.add(pred)
                queue.append(pred)
    return done


def _message_runs(nodes: Mapping[str, Node]) -> Iterator[tuple[str, str]]:
    """(node id, problem) for message nodes that would auto-advance forever (they lie
    on a cycle of messages) or through more messages in a row than the runtime allows.

    Linear: a message node has one successor, so each run of messages is walked
    once and every node on it gets its run length (or the cycle mark) on the way
    back. A node leading into a cycle is not reported; the cycle's own nodes are."""
    run: dict[str, int] = {}  # message node id -> messages in a row from it (itself included)
    cycle, into_cycle = -1, -2
    for node in nodes.values():
        if node.kind is not NodeKind.MESSAGE or node.id in run:
            continue
        path: list[str] = []
        on_path: dict[str, int] = {}
        current: Node | None = node
        tail = 0
        while current is not None and current.kind is NodeKind.MESSAGE:
            if current.id in run:
                tail = run[current.id]
                break
            if current.id in on_path:  # a new cycle: its nodes from where it closes
                for member in path[on_path[current.id] :]:
                    run[member] = cycle
                del path[on_path[current.id] :]
                tail = cycle
                break
            on_path[current.id] = len(path)
            path.append(current.id)
            current = nodes.get(current.next or "")
        for member in reversed(path):
            tail = into_cycle if tail < 0 else tail + 1
            run[member] = tail
    for node in nodes.values():
        length = run.get(node.id, 0)
        if length == cycle:
            yield node.id, "message nodes form a cycle that never waits"
        elif length > MAX_AUTO_ADVANCE - 1:
            yield (
                node.id,
                (
                    f"more than {MAX_AUTO_ADVANCE - 1} message nodes in a row; "
                    "put a question between them"
                ),
            )


def _node_errors(node: Node, file: str, known: set[str]) -> Iterator[FlowError]:
    if not node.text.strip():
        yield FlowError(file, node.id, "text", "text is empty")
    elif len(node.text) > MAX_TEXT_CHARS:
        yield FlowError(file, node.id, "text", f"text is longer than {MAX_TEXT_CHARS} characters")
    for dup in _duplicates(b.id for b in node.buttons):
        yield FlowError(file, node.id, f"buttons.{dup}", f"duplicate button id {dup!r}")
    for button in node.buttons:
        where = f"buttons.{button.id}"
        if not button.label.strip():
            yield FlowError(file, node.id, f"{where}.label", "label is empty")
        elif len(button.label) > MAX_LABEL_CHARS:
            yield FlowError(
                file,
                node.id,
                f"{where}.label",
                f"label is {len(button.label)} characters, at most {MAX_LABEL_CHARS} fit a button",
            )
        for candidates in [b.to for b in button.branches] or [button.next]:
            for dup in _duplicates(candidates):
                message = f"candidate {dup!r} is listed twice"
                yield FlowError(file, node.id, f"{where}.next", message)
        for target in button.targets():
            if target not in known:
                yield FlowError(file, node.id, f"{where}.next", f"unknown next node {target!r}")
    if node.branches:
        for target in node.successors():
            if target not in known:
                yield FlowError(file, node.id, "next", f"unknown next node {target!r}")
    elif node.next is not None and node.next not in known:
        yield FlowError(file, node.id, "next", f"unknown next node {node.next!r}")
    yield from _field_errors(node, file)


def _field_errors(node: Node, file: str) -> Iterator[FlowError]:
    if node.kind is not NodeKind.LEAD_FORM:
        return
    for dup in _duplicates(f.name for f in node.fields):
        yield FlowError(file, node.id, f"fields.{dup}", f"duplicate field {dup!r}")
    for lead_field in node.fields:
        if not lead_field.label.strip():
            yield FlowError(file, node.id, f"fields.{lead_field.name}.label", "label is empty")
        if len(lead_field.label) > MAX_TEXT_CHARS:
            yield FlowError(file, node.id, f"fields.{lead_field.name}.label", "label is too long")
    if not any(f.type in ("email", "phone") for f in node.fields):
        yield FlowError(
            file, node.id, "fields", "a lead form needs an email or a phone field to reach the lead"
        )


def semantic_errors(flow: Flow, all_nodes: Sequence[Node], file: str) -> list[FlowError]:
    """Graph checks. ``all_nodes`` lists every authored node, duplicates included,
    so that a node shadowed by a later one with the same id is still checked."""
    errors = [
        FlowError(file, dup, "id", f"duplicate node id {dup!r}")
        for dup in _duplicates(n.id for n in all_nodes)
    ]
    known = set(flow.nodes)
    if flow.start not in known:
        errors.append(FlowError(file, "", "start", f"unknown start node {flow.start!r}"))
    for node in all_nodes:
        errors.extend(_node_errors(node, file, known))
    if flow.start in known:
        reachable = _reachable(flow.start, flow.nodes)
        nudge = flow.timers.idle.to if flow.timers.idle is not None else ""
        if nudge in known:  # the idle nudge's node is reached from any waiting node
            reachable |= _reachable(nudge, flow.nodes)
        for node_id in flow.nodes:
            if node_id not in reachable:
                errors.append(FlowError(file, node_id, "", "unreachable from the start node"))
    finishing = _can_finish(flow.nodes)
    for node_id in flow.nodes:
        if node_id not in finishing:
            errors.append(FlowError(file, node_id, "", "no end node is reachable from here"))
    for node_id, problem in _message_runs(flow.nodes):
        errors.append(FlowError(file, node_id, "next", problem))
    for node_id, where, problem in v2_problems(flow, list(all_nodes)):
        errors.append(FlowError(file, node_id, where, problem))
    for where, problem in timer_problems(flow.timers, flow.nodes):
        errors.append(FlowError(file, "", where, problem))
    errors.extend(_nudge_errors(flow, file))
    return errors


def _nudge_errors(flow: Flow, file: str) -> list[FlowError]:
    """The idle nudge's message is a text like any other: its templates and links,
    in every locale (each distinct problem once)."""
    types = variable_types(flow)
    problems: dict[str, None] = {}
    for translation in (flow, *flow.translations.values()):
        idle = translation.timers.idle
        if idle is not None and idle.message:
            problems.update(dict.fromkeys(template_problems(idle.message, types, markdown=True)))
    return [FlowError(file, "", "timers.idle.message", problem) for problem in problems]
