"""Evaluating a flow's conditions: whether a parsed condition holds for a visitor.

Evaluation (:func:`evaluate`) is pure. A variable alone is true when it has a
non-empty value. A comparison with a missing value is false (``!=`` included),
so ``not (x == 1)`` is how to say "x is not 1 or not answered". Numbers compare
numerically: a text value is read as a number when compared with a number
literal, and the comparison is false if it is not one.

:func:`condition` gives the same answers as :func:`evaluate` from closures
compiled once per condition text, for the decider's hot path. The language and
its parser are :mod:`schemas.expression_parser`, the tree it builds
:mod:`schemas.expression_tree`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from schemas.expression_parser import parse_expression
from schemas.expression_tree import BoolOp, Compare, Expr, In, Literal, Not, Scalar, Truthy, Var

Lookup = Callable[[Var], str | None]


def _number(value: Scalar) -> float | None:
    if isinstance(value, float):
        return value
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _value(operand: Var | Literal, lookup: Lookup) -> Scalar | None:
    return operand.value if isinstance(operand, Literal) else lookup(operand)


def _equal(left: Scalar, right: Scalar) -> bool:
    if isinstance(left, float) or isinstance(right, float):
        a, b = _number(left), _number(right)
        return a is not None and a == b
    return left == right


def _compare(left: Scalar | None, op: str, right: Scalar | None) -> bool:
    if left is None or right is None:
        return False
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if isinstance(left, str) and isinstance(right, str):
        a: Scalar | None = left
        b: Scalar | None = right
    else:
        a, b = _number(left), _number(right)
        if a is None or b is None:
            return False
    assert a is not None and b is not None
    match op:
        case "<":
            return a < b  # type: ignore[operator]
        case "<=":
            return a <= b  # type: ignore[operator]
        case ">":
            return a > b  # type: ignore[operator]
        case _:
            return a >= b  # type: ignore[operator]


def evaluate(expr: Expr, lookup: Lookup) -> bool:
    """Whether ``expr`` holds; ``lookup`` gives a variable's value (None: missing)."""
    match expr:
        case Compare(left=left, op=op, right=right):
            return _compare(_value(left, lookup), op, _value(right, lookup))
        case In(item=item, options=options, negated=negated):
            value = _value(item, lookup)
            if value is None:
                return False
            found = any(_equal(value, option) for option in options)
            return found != negated
        case Not(inner=inner):
            return not evaluate(inner, lookup)
        case BoolOp(op="and", parts=parts):
            return all(evaluate(part, lookup) for part in parts)
        case BoolOp(parts=parts):
            return any(evaluate(part, lookup) for part in parts)
        case Truthy(var=var):
            return bool(lookup(var))


Condition = Callable[[Lookup], bool]


@lru_cache(maxsize=4096)
def condition(text: str) -> Condition:
    """``text`` parsed once and compiled into closures: ``condition(text)(lookup)``
    is ``evaluate(parse_expression(text), lookup)`` without walking the tree
    (pattern matching a node costs a microsecond or so, and the decider evaluates
    a branch's condition on every press through it). Raises like the parser."""
    return _compiled(parse_expression(text))


def _operand(operand: Var | Literal) -> Callable[[Lookup], Scalar | None]:
    if isinstance(operand, Literal):
        value = operand.value
        return lambda lookup: value
    return lambda lookup: lookup(operand)


def _compiled(expr: Expr) -> Condition:
    if isinstance(expr, Compare):
        left, right, op = _operand(expr.left), _operand(expr.right), expr.op
        return lambda lookup: _compare(left(lookup), op, right(lookup))
    if isinstance(expr, In):
        item, options, negated = _operand(expr.item), expr.options, expr.negated
        texts = frozenset(o for o in options if isinstance(o, str))
        numbers = tuple(o for o in options if not isinstance(o, str))

        def within(lookup: Lookup) -> bool:
            value = item(lookup)
            if value is None:
                return False
            if isinstance(value, str):  # a text equals a text option, or compares as a number
                found = value in texts or any(_equal(value, n) for n in numbers)
            else:
                found = any(_equal(value, option) for option in options)
            return found != negated

        return within
    if isinstance(expr, Not):
        inner = _compiled(expr.inner)
        return lambda lookup: not inner(lookup)
    if isinstance(expr, BoolOp):
        parts = tuple(_compiled(part) for part in expr.parts)
        if expr.op == "and":

            def every(lookup: Lookup) -> bool:
                for part in parts:  # noqa: SIM110 (a loop: no generator per call)
                    if not part(lookup):
                        return False
                return True

            return every

        def some(lookup: Lookup) -> bool:
            for part in parts:  # noqa: SIM110 (a loop: no generator per call)
                if part(lookup):
                    return True
            return False

        return some
    var = expr.var
    return lambda lookup: bool(lookup(var))
