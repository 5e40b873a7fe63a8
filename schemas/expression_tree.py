"""The syntax tree of a flow condition: what the parser builds, what the checks
and the evaluator read.

A condition is an :data:`Expr`: a comparison (:class:`Compare`, :class:`In`), a
variable alone (:class:`Truthy`), or :class:`Not` and :class:`BoolOp` over
conditions. Operands are variables (:class:`Var`: an answer or lead field, or a
field of the visitor's context, one of :data:`CONTEXT_FIELDS`) and literals
(:class:`Literal`, a :data:`Scalar`: a text or a number). :func:`variables`
lists what a condition reads, for the flow checks. Parsing is
:mod:`schemas.expression_parser`, evaluating
:mod:`schemas.expression_evaluation`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

CONTEXT_FIELDS = (
    "device",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "locale",
    "time_zone",
)

Scalar = str | float


@dataclass(frozen=True, slots=True)
class Var:
    """``scope`` is ``answers`` (answers and lead fields) or ``context``."""

    scope: str
    name: str

    def __str__(self) -> str:
        return self.name if self.scope == "answers" else f"{self.scope}.{self.name}"


@dataclass(frozen=True, slots=True)
class Literal:
    value: Scalar


@dataclass(frozen=True, slots=True)
class Compare:
    left: Var | Literal
    op: str
    right: Var | Literal


@dataclass(frozen=True, slots=True)
class In:
    item: Var | Literal
    options: tuple[Scalar, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    inner: Expr


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Truthy:
    var: Var


Expr = Compare | In | Not | BoolOp | Truthy


def variables(expr: Expr) -> Iterator[Var]:
    """Every variable ``expr`` reads, in order."""
    match expr:
        case Compare(left=left, right=right):
            yield from (v for v in (left, right) if isinstance(v, Var))
        case In(item=item):
            if isinstance(item, Var):
                yield item
        case Not(inner=inner):
            yield from variables(inner)
        case BoolOp(parts=parts):
            for part in parts:
                yield from variables(part)
        case Truthy(var=var):
            yield var
