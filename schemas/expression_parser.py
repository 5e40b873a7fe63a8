"""The condition language of flows: a small, declared expression language.

Grammar (whitespace between tokens is free)::

    expr   := or
    or     := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | compare
    compare:= operand (OP operand | "not"? "in" list)?
    operand:= NUMBER | STRING | VAR | "(" expr ")"
    list   := "[" (literal ("," literal)*)? "]"
    OP     := "==" | "!=" | "<" | "<=" | ">" | ">="
    VAR    := NAME | "answers." NAME | "context." NAME

Strings are in single or double quotes (a backslash escapes the quote or
itself); numbers are decimal (``3``, ``-2.5``). A variable alone is a
condition, true when it has a non-empty value. Parsing is a hand-written
recursive descent over at most :data:`MAX_EXPRESSION_CHARS` characters and
:data:`MAX_DEPTH` nesting levels: no ``eval``, nothing is ever executed.
The tree it builds is :mod:`schemas.expression_tree`; evaluating a parsed
condition is :mod:`schemas.expression_evaluation`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from schemas.expression_tree import BoolOp, Compare, Expr, In, Literal, Not, Scalar, Truthy, Var

MAX_EXPRESSION_CHARS = 500
MAX_DEPTH = 16
MAX_LIST_ITEMS = 50
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")


class ExpressionError(ValueError):
    """A condition that does not parse; the message says where."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>-?\d+(?:\.\d+)?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    | (?P<name>[a-z][a-z0-9_-]*(?:\.[a-z0-9][a-z0-9_-]*)?)
    )""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "not", "in"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise ExpressionError(f"unexpected character at column {column}")
        kind = match.lastgroup or ""
        value, start = match.group(kind), match.start(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "keyword"
        out.append(_Token(kind, value, start + 1))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, text: str | None = None) -> _Token:
        token = self.peek()
        if token is None:
            raise ExpressionError("the condition ends too early")
        if text is not None and token.text != text:
            raise ExpressionError(f"expected {text!r} at column {token.at}, found {token.text!r}")
        self.i += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text and token.kind in ("keyword", "op")

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} levels deep")
        try:
            return self.boolean("or", lambda: self.boolean("and", self.negation))
        finally:
            self.depth -= 1

    def boolean(self, op: str, part: Callable[[], Expr]) -> Expr:
        parts = [part()]
        while self.at(op):
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else BoolOp(op, tuple(parts))

    def negation(self) -> Expr:
        if self.at("not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionError(f"nested more than {MAX_DEPTH} levels deep")
            try:
                return Not(self.negation())
            finally:
                self.depth -= 1
        return self.compare()

    def compare(self) -> Expr:
        if self.at("("):
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        left = self.operand()
        token = self.peek()
        if token is not None and token.text in COMPARISONS:
            self.take()
            return Compare(left, token.text, self.operand())
        negated = False
        if self.at("not"):
            self.take()
            negated = True
            if not self.at("in"):
                raise ExpressionError("expected 'in' after 'not'")
        if self.at("in"):
            self.take()
            return In(left, self.options(), negated)
        if isinstance(left, Var):
            return Truthy(left)
        raise ExpressionError(f"{left.value!r} alone is not a condition")

    def operand(self) -> Var | Literal:
        token = self.take()
        if token.kind == "number":
            return Literal(float(token.text))
        if token.kind == "string":
            return Literal(_unquote(token.text))
        if token.kind == "name":
            return _var(token)
        raise ExpressionError(f"expected a value at column {token.at}, found {token.text!r}")

    def options(self) -> tuple[Scalar, ...]:
        self.take("[")
        items: list[Scalar] = []
        while not self.at("]"):
            if items:
                self.take(",")
            value = self.operand()
            if not isinstance(value, Literal):
                raise ExpressionError("a list holds literals only (strings or numbers)")
            items.append(value.value)
            if len(items) > MAX_LIST_ITEMS:
                raise ExpressionError(f"a list holds at most {MAX_LIST_ITEMS} items")
        self.take("]")
        return tuple(items)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _var(token: _Token) -> Var:
    scope, dot, name = token.text.partition(".")
    if not dot:
        return Var("answers", scope)
    if scope not in ("answers", "context"):
        raise ExpressionError(
            f"unknown scope {scope!r} at column {token.at} (use answers.NAME or context.NAME)"
        )
    return Var(scope, name)


def parse_var(name: str) -> Var:
    """A variable's name (``x``, ``answers.x``, ``context.locale``) as a :class:`Var`."""
    return _var(_Token("name", name, 1))


@lru_cache(maxsize=4096)
def parse_expression(text: str) -> Expr:
    """The syntax tree of ``text``, or :class:`ExpressionError`."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the condition is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"the condition is longer than {MAX_EXPRESSION_CHARS} characters")
    parser = _Parser(text)
    expr = parser.expr()
    rest = parser.peek()
    if rest is not None:
        raise ExpressionError(f"unexpected {rest.text!r} at column {rest.at}")
    return expr
