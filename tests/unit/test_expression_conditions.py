"""``condition(text)`` (the decider's compiled conditions) decides exactly as
``evaluate(parse_expression(text), ...)`` on every expression form and every
kind of value: text, numbers written as text, missing values, context fields."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from schemas.expression_evaluation import condition, evaluate
from schemas.expression_parser import ExpressionError, parse_expression
from schemas.expression_tree import Var

EXPRESSIONS = [
    'roof == "flat"',
    'roof != "flat"',
    "size > 100",
    "size >= 100.5",
    "size < 3 or size == 7",
    'roof in ["flat", "pitched"]',
    'roof not in ["flat", "pitched"]',
    "size in [1, 2, 3]",
    'size in ["1", 2]',
    'not (roof == "flat" and size > 10)',
    'roof == "flat" and (size > 10 or context.device == "mobile")',
    "roof",
    "not roof",
    'context.device in ["mobile", "tablet"] and not context.locale == "de"',
    'name != "" and context.device in ["mobile", "desktop"]',
]
VALUES = [None, "", "flat", "pitched", "7", "100", "100.5", "1e3", "nan", "2", "abc"]
DEVICES = ["mobile", "desktop"]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_compiled_conditions_decide_as_the_tree_does(text: str) -> None:
    tree, compiled = parse_expression(text), condition(text)
    for roof, size, name, device in itertools.product(VALUES, VALUES, VALUES[:3], DEVICES):
        values = {"roof": roof, "size": size, "name": name}
        context = {"device": device, "locale": "de"}
        lookup = _lookup(values, context)
        assert compiled(lookup) == evaluate(tree, lookup), (text, values, device)


def _lookup(values: dict[str, str | None], context: dict[str, str]) -> Callable[[Var], str | None]:
    def lookup(var: Var) -> str | None:
        return context.get(var.name) if var.scope == "context" else values.get(var.name)

    return lookup


def test_a_bad_condition_raises_as_the_parser_does() -> None:
    with pytest.raises(ExpressionError):
        condition('roof == "flat" and')
    assert condition("roof") is condition("roof")  # compiled once
