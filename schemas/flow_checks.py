"""The semantic checks of flow format v2: conditions, variables, templates,
rich text and free-text inputs (:mod:`schemas.flow_graph` runs them).

Variables: every ``question`` and ``input`` node stores its answer under its
``variable`` (``store_as`` or its id), every lead form field under its name;
``context.*`` names the visitor context. A condition may read only variables
that some path from the start answers before it (a dataflow over the graph),
never a personal one (lead fields, personal inputs: the decider reads
conditions without the conversation key), and literals must fit the
variable's type where it is known (a button's ids, a number).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from schemas.expression_parser import ExpressionError, parse_expression
from schemas.expression_tree import (
    CONTEXT_FIELDS,
    BoolOp,
    Compare,
    Expr,
    In,
    Literal,
    Not,
    Var,
    variables,
)
from schemas.flow import WAITING_KINDS, Branch, Flow, InputType, Node, NodeKind
from schemas.templates import TemplateError, bad_links, placeholders

MAX_LABEL_CHARS = 40
DEVICES = frozenset({"desktop", "mobile", "tablet", "unknown"})


@dataclass(frozen=True, slots=True)
class VarType:
    """What is known of a variable: ``number``, ``text`` or ``choice`` (then
    ``ids`` are the values it can take, unless ``open``), and whether personal."""

    kind: str
    ids: frozenset[str] = frozenset()
    open: bool = False
    personal: bool = False


Problem = tuple[str, str, str]
"""(node id, field, message)"""


def variable_types(flow: Flow) -> dict[str, VarType]:
    out: dict[str, VarType] = {}
    for node in flow.nodes.values():
        for name, var_type in _stores(node):
            out.setdefault(name, var_type)
    return out


def _stores(node: Node) -> Iterator[tuple[str, VarType]]:
    if node.kind is NodeKind.QUESTION:
        yield node.variable, VarType("choice", frozenset(b.id for b in node.buttons))
    elif node.kind is NodeKind.INPUT and node.input is not None:
        spec = node.input
        if spec.type is InputType.NUMBER:
            yield node.variable, VarType("number", personal=spec.personal)
        elif spec.type is InputType.CHOICE:
            ids = frozenset(c.id for c in spec.choices)
            yield node.variable, VarType("choice", ids, spec.other, spec.personal)
        else:
            yield node.variable, VarType("text", personal=spec.personal)
    elif node.kind is NodeKind.LEAD_FORM:
        for lead_field in node.fields:
            yield lead_field.name, VarType("text", personal=True)


def _context_type(name: str) -> VarType | None:
    if name not in CONTEXT_FIELDS:
        return None
    return VarType("choice", DEVICES) if name == "device" else VarType("text")


def _defined_before(flow: Flow) -> dict[str, frozenset[str]]:
    """For each node, the variables some path from the start has answered on
    arriving there (a forward may-dataflow to a fixpoint)."""
    into: dict[str, set[str]] = {node_id: set() for node_id in flow.nodes}
    if flow.start not in flow.nodes:
        return {k: frozenset(v) for k, v in into.items()}
    queue = deque([flow.start])
    queued = {flow.start}
    reached = {flow.start}
    nudge = flow.timers.idle.to if flow.timers.idle is not None else ""
    while queue:
        node = flow.nodes[queue.popleft()]
        queued.discard(node.id)
        out = into[node.id] | {name for name, _ in _stores(node)}
        targets = node.successors()
        if nudge and node.kind in WAITING_KINDS:  # the idle nudge may lead there from here
            targets = (*targets, nudge)
        for target in targets:
            if target not in into:
                continue
            # every node is analysed once it is reached, even when nothing new is
            # answered on the way (a message after the start stores nothing)
            if target not in reached or not out <= into[target]:
                reached.add(target)
                into[target] |= out
                if target not in queued:
                    queued.add(target)
                    queue.append(target)
    return {k: frozenset(v) for k, v in into.items()}


def v2_problems(flow: Flow, nodes: list[Node]) -> list[Problem]:
    types = variable_types(flow)
    before = _defined_before(flow)
    problems: list[Problem] = []
    for node in nodes:
        known = before.get(node.id, frozenset()) | {name for name, _ in _stores(node)}
        problems.extend(_text_problems(node, types))
        problems.extend(_input_problems(node))
        if node.branches:
            problems.extend(_branch_problems(node, "next", node.branches, types, known))
            problems.extend(
                (node.id, f"next[{i}].to", "a node's next cannot be a decision point; use buttons")
                for i, branch in enumerate(node.branches)
                if len(branch.to) > 1
            )
        for button in node.buttons:
            where = f"buttons.{button.id}.next"
            problems.extend(_branch_problems(node, where, button.branches, types, known))
            if sum(len(b.to) > 1 for b in button.branches) > 1:
                problems.append(
                    (node.id, where, "at most one decision point per button (one list in to)")
                )
    return problems


def _text_problems(node: Node, types: Mapping[str, VarType]) -> Iterator[Problem]:
    texts = [("text", node.text, True)] + [
        (f"buttons.{b.id}.label", b.label, False) for b in node.buttons
    ]
    for where, text, markdown in texts:
        for problem in template_problems(text, types, markdown=markdown):
            yield node.id, where, problem


def template_problems(text: str, types: Mapping[str, VarType], *, markdown: bool) -> Iterator[str]:
    """What is wrong with the templates of one text (and its links when it is
    Markdown): a placeholder that does not parse or names no variable."""
    try:
        for placeholder in placeholders(text):
            problem = _unknown(placeholder.var, types)
            if problem:
                yield problem
    except TemplateError as exc:
        yield str(exc)
    if markdown:
        for target in bad_links(text):
            shown = target if len(target) <= 60 else target[:59] + "…"
            yield f"link {shown!r}: links must be https, http or mailto"


def _unknown(var: Var, types: Mapping[str, VarType]) -> str:
    if var.scope == "context":
        if var.name not in CONTEXT_FIELDS:
            return f"unknown context field {var.name!r} (one of {', '.join(CONTEXT_FIELDS)})"
        return ""
    if var.name not in types:
        return f"unknown variable {var.name!r}: no question, input or lead field stores it"
    return ""


def _input_problems(node: Node) -> Iterator[Problem]:
    spec = node.input
    if spec is None:
        return
    if spec.type is InputType.CHOICE and not spec.choices:
        yield node.id, "input.choices", "a choice input needs choices"
    if spec.type is not InputType.CHOICE and (spec.choices or spec.other):
        yield node.id, "input", "choices and other are for type choice only"
    if spec.type is not InputType.NUMBER and (spec.min is not None or spec.max is not None):
        yield node.id, "input", "min and max are for type number only"
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        yield node.id, "input.min", "min is greater than max"
    seen: set[str] = set()
    for choice in spec.choices:
        if choice.id in seen:
            yield node.id, f"input.choices.{choice.id}", f"duplicate choice id {choice.id!r}"
        seen.add(choice.id)
        if not choice.label.strip():
            yield node.id, f"input.choices.{choice.id}.label", "label is empty"
        elif len(choice.label) > MAX_LABEL_CHARS:
            yield (
                node.id,
                f"input.choices.{choice.id}.label",
                f"label is {len(choice.label)} characters, at most {MAX_LABEL_CHARS} fit a button",
            )


def _branch_problems(
    node: Node,
    where: str,
    branches: tuple[Branch, ...],
    types: Mapping[str, VarType],
    known: frozenset[str],
) -> Iterator[Problem]:
    if not branches:
        return
    seen: dict[str, int] = {}
    defaults = [i for i, b in enumerate(branches) if b.when is None]
    if not defaults:
        yield node.id, where, "a conditional next needs a default: end it with {to: NODE}"
    elif defaults[0] != len(branches) - 1:
        after = defaults[0] + 1
        yield node.id, f"{where}[{after}]", "unreachable: it comes after the default"
    for i, branch in enumerate(branches):
        if branch.when is None:
            continue
        at = f"{where}[{i}].when"
        if branch.when.strip() in seen:
            first = seen[branch.when.strip()]
            yield node.id, at, f"unreachable: the same condition as {where}[{first}]"
            continue
        seen[branch.when.strip()] = i
        try:
            expr = parse_expression(branch.when)
        except ExpressionError as exc:
            yield node.id, at, f"condition does not parse: {exc}"
            continue
        for message in _expr_problems(expr, types, known):
            yield node.id, at, message


def _expr_problems(
    expr: Expr, types: Mapping[str, VarType], known: frozenset[str]
) -> Iterator[str]:
    reported: set[Var] = set()
    for var in variables(expr):
        if var in reported:
            continue
        reported.add(var)
        problem = _unknown(var, types)
        if problem:
            yield problem
            continue
        if var.scope != "answers":
            continue
        if types[var.name].personal:
            yield (
                f"{var.name!r} is personal data: conditions cannot read it "
                "(an input with personal: false can be)"
            )
        elif var.name not in known:
            yield f"{var.name!r} is asked only later: no path from the start answers it before here"
    yield from _type_problems(expr, types)


def _type_of(var: Var, types: Mapping[str, VarType]) -> VarType | None:
    return _context_type(var.name) if var.scope == "context" else types.get(var.name)


def _literal_problem(var: Var, value: str | float, types: Mapping[str, VarType]) -> str:
    var_type = _type_of(var, types)
    if var_type is None:
        return ""
    if var_type.kind == "number" and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return f"{var} is a number; it is never {value!r}"
    closed = var_type.kind == "choice" and not var_type.open
    if closed and (isinstance(value, float) or value not in var_type.ids):
        shown = value if isinstance(value, str) else f"{value:g}"
        options = ", ".join(sorted(var_type.ids))
        return f"{var} is one of {options}; it is never {shown!r}"
    return ""


def _type_problems(expr: Expr, types: Mapping[str, VarType]) -> Iterator[str]:
    match expr:
        case (
            Compare(left=Var() as var, op=op, right=Literal(value=value))
            | Compare(left=Literal(value=value), op=op, right=Var() as var)
        ):
            if op in ("==", "!="):
                problem = _literal_problem(var, value, types)
                if problem:
                    yield problem
            elif _type_of(var, types) is not None and isinstance(value, str):
                var_type = _type_of(var, types)
                if var_type is not None and var_type.kind == "number":
                    yield f"{var} is a number; compare it with a number, not {value!r}"
        case In(item=Var() as var, options=options):
            for option in options:
                problem = _literal_problem(var, option, types)
                if problem:
                    yield problem
        case Not(inner=inner):
            yield from _type_problems(inner, types)
        case BoolOp(parts=parts):
            for part in parts:
                yield from _type_problems(part, types)
        case _:
            return
