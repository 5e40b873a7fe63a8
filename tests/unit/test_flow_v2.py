"""Flow format v2: the condition language, templates and their escaping, and the
static checks of every new construct (errors naming file, node and field)."""

from __future__ import annotations

import pytest

from schemas.expression_evaluation import evaluate
from schemas.expression_parser import ExpressionError, parse_expression
from schemas.expression_tree import BoolOp, Compare, In, Literal, Not, Truthy, Var
from schemas.flow_validation import validate_text
from schemas.templates import TemplateError, bad_links, escape_markdown, parse_template, render
from tests.unit.flows_v2 import ROOFER_YAML, roofer

# --- the expression language ------------------------------------------------


def test_parser_builds_the_tree_with_precedence() -> None:
    """`not` binds tighter than `and`, `and` tighter than `or`; parentheses group."""
    expr = parse_expression('a == "x" or not b in [1, 2] and (context.device != "mobile")')
    assert expr == BoolOp(
        "or",
        (
            Compare(Var("answers", "a"), "==", Literal("x")),
            BoolOp(
                "and",
                (
                    Not(In(Var("answers", "b"), (1.0, 2.0))),
                    Compare(Var("context", "device"), "!=", Literal("mobile")),
                ),
            ),
        ),
    )
    assert parse_expression("answers.size") == Truthy(Var("answers", "size"))
    assert parse_expression("x not in ['a', 'b']") == In(Var("answers", "x"), ("a", "b"), True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("a ==", "ends too early"),
        ("a == 1 b", "unexpected 'b'"),
        ("a = 1", "unexpected character"),
        ("__import__('os')", "unexpected character"),
        ("env.home == 1", "unknown scope 'env'"),
        ("'x'", "alone is not a condition"),
        ("a in [b]", "literals only"),
        ("(" * 40 + "a" + ")" * 40, "nested more than"),
        ("a == " + "1" * 600, "longer than"),
    ],
)
def test_parser_refuses_bad_conditions(text: str, message: str) -> None:
    """Anything outside the grammar is an ExpressionError saying why; nothing is evaluated."""
    with pytest.raises(ExpressionError, match=message):
        parse_expression(text)


def test_evaluation_semantics() -> None:
    """Numbers compare numerically, strings as strings; missing values make every
    comparison false (!= included) and `not` turns that around."""
    values = {"n": "12", "s": "flat", "d": "2025-03-01", "t": "abc"}

    def lookup(var: Var) -> str | None:
        return values.get(var.name)

    def check(text: str) -> bool:
        return evaluate(parse_expression(text), lookup)

    assert check("n > 9 and n <= 12 and n == 12.0")
    assert not check("n < 9")
    assert check('s in ["flat", "pitched"]') and not check('s not in ["flat"]')
    assert check('d >= "2025-01-01"')  # ISO dates compare as text
    assert not check("t > 1")  # not a number: false, never an error
    assert not check("missing == 1") and not check("missing != 1")
    assert check("not (missing == 1)") and not check("missing") and check("s")
    assert check("n in [1, 12]")


# --- templates --------------------------------------------------------------


def test_template_renders_values_fallbacks_and_escapes_markup() -> None:
    """A visitor's value can never add markup or a link: Markdown specials get a
    backslash and line breaks become spaces; a missing value renders the fallback."""
    values = {"name": "**Eve** [x](https://evil.example)\nhi", "size": "12"}

    def resolve(var: Var) -> str | None:
        return values.get(var.name)

    text = "Hi {{ name | there }}, {{answers.size}} m², {{nope|friend}}{{gone}}!"
    rendered = render(text, resolve)
    assert rendered == (r"Hi \*\*Eve\*\* \[x\]\(https://evil.example\) hi, 12 m², friend!")
    assert bad_links(rendered) == []  # an escaped link is no link
    assert render("Label {{name}}", resolve, markdown=False) == (
        "Label **Eve** [x](https://evil.example) hi"
    )
    assert escape_markdown("<b>&") == r"\<b\>&"


def test_template_parse_errors() -> None:
    """Placeholders are variable names only: no expressions, no nesting, closed."""
    for bad in ("{{ 1 + 1 }}", "{{ name", "{{ os.system }}", "{{ name | {{x}} }}"):
        with pytest.raises(TemplateError):
            parse_template(bad)
    assert parse_template("plain") == ("plain",)


def test_links_must_be_safe() -> None:
    assert bad_links("[a](https://x.example) [b](mailto:a@b.c) [c](javascript:alert(1))") == [
        "javascript:alert(1"
    ]


# --- validation of v2 flows -------------------------------------------------


def errors_of(yaml_text: str) -> list[str]:
    _flow, errors = validate_text(yaml_text, "v2.yaml")
    return [str(e) for e in errors]


def test_the_v2_test_flow_is_valid() -> None:
    flow = roofer()
    assert flow.decision_points() == [("roof", "pitched")]
    assert flow.node("size").input is not None
    assert set(flow.node("size").successors()) == {"big_flat", "small_flat", "contact"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'when: roof == "flat" and size >= 100',
            'when: roof == "flat" and sise >= 100',
            "v2.yaml: size.next[0].when: unknown variable 'sise'",
        ),
        (
            'when: roof == "flat" and size >= 100',
            'when: roof == "flta"',
            "v2.yaml: size.next[0].when: roof is one of flat, pitched; it is never 'flta'",
        ),
        (
            'when: roof == "flat" and size >= 100',
            'when: size == "big"',
            "v2.yaml: size.next[0].when: size is a number; it is never 'big'",
        ),
        (
            'when: roof == "flat" and size >= 100',
            "when: name == 'Ann'",
            "v2.yaml: size.next[0].when: 'name' is personal data",
        ),
        (
            'when: roof == "flat" and size >= 100',
            'when: roof == "flat" and',
            "v2.yaml: size.next[0].when: condition does not parse: the condition ends too early",
        ),
        (
            'when: roof == "flat"\n        to: small_flat',
            'when: roof == "flat" and size >= 100\n        to: small_flat',
            "v2.yaml: size.next[1].when: unreachable: the same condition as next[0]",
        ),
        (
            "      - to: contact\n  - id: big_flat",
            "      - {when: roof == 'pitched', to: contact}\n  - id: big_flat",
            "v2.yaml: size.next: a conditional next needs a default",
        ),
        (
            "      - {to: size}",
            "      - {to: size}\n          - {when: context.locale == 'de', to: size}",
            "v2.yaml: roof.buttons.pitched.next[2]: unreachable: it comes after the default",
        ),
        (
            "      - {id: flat, label: Flat, next: size}",
            "      - {id: flat, label: Flat, next: [{when: size > 3, to: size}, {to: size}]}",
            "v2.yaml: roof.buttons.flat.next[0].when: 'size' is asked only later",
        ),
        (
            "      - {to: size}",
            "      - {when: context.colour == 'x', to: size}\n          - {to: size}",
            "v2.yaml: roof.buttons.pitched.next[1].when: unknown context field 'colour'",
        ),
        (
            "      - to: contact\n  - id: big_flat",
            "      - to: [contact, bye]\n  - id: big_flat",
            "v2.yaml: size.next[2].to: a node's next cannot be a decision point",
        ),
        (
            "text: Where should we send the quote, {{name}}?",
            "text: Where should we send the quote, {{nmae}}?",
            "v2.yaml: contact.text: unknown variable 'nmae'",
        ),
        (
            "(https://example.com/guide)",
            "(javascript:alert(1))",
            "v2.yaml: hello.text: link 'javascript:alert(1': links must be https",
        ),
        (
            "text: What kind of roof do you have, {{name | friend}}?",
            "text: What kind of roof do you have, {{name + 1}}?",
            "v2.yaml: roof.text: {{name + 1}} is not a variable name",
        ),
        (
            "input: {type: number, min: 1, max: 2000",
            "input: {type: number, min: 3000, max: 2000",
            "v2.yaml: size.input.min: min is greater than max",
        ),
        (
            "input: {type: text, max_length: 40, placeholder: Your first name}",
            "input: {type: choice}",
            "v2.yaml: ask_name.input.choices: a choice input needs choices",
        ),
        (
            "input: {type: text, max_length: 40, placeholder: Your first name}",
            "input: {type: text, max_length: 40000}",
            "v2.yaml: ask_name.input.max_length: 40000 is greater than the maximum of 1000",
        ),
        (
            'image: {src: "https://example.com/roof.png", alt: A tiled roof}',
            'image: {src: "http://example.com/roof.png", alt: A tiled roof}',
            "v2.yaml: hello.image.src: 'http://example.com/roof.png' does not match",
        ),
        (
            'image: {src: "https://example.com/roof.png", alt: A tiled roof}',
            'image: {src: "https://example.com/roof.png"}',
            "v2.yaml: hello.image.alt: 'alt' is a required property",
        ),
    ],
)
def test_each_v2_error_names_file_node_and_field(old: str, new: str, expected: str) -> None:
    """One mistake in the valid v2 flow gives an error naming file, node and field."""
    assert old in ROOFER_YAML
    errors = errors_of(ROOFER_YAML.replace(old, new, 1))
    assert any(e.startswith(expected) for e in errors), errors


def test_decision_points_of_one_button_are_at_most_one() -> None:
    text = ROOFER_YAML.replace(
        "      - {to: size}", "      - {to: [size, contact]}\n          - {to: size}"
    )
    errors = errors_of(text)
    assert any("roof.buttons.pitched.next: at most one decision point" in e for e in errors)


def test_a_condition_may_read_an_answer_given_after_a_message_that_stores_nothing() -> None:
    """The dataflow reaches every node, even when the nodes before it answer nothing
    (a flow that opens with a message: it rejected every condition on an earlier
    answer there as 'asked only later')."""
    text = """\
id: t
version: 1
start: a
nodes:
  - {id: a, kind: message, text: Hi, next: b}
  - id: b
    kind: question
    text: First?
    buttons: [{id: x, label: X, next: c}, {id: y, label: Y, next: c}]
  - id: c
    kind: question
    text: Second?
    buttons:
      - id: z
        label: Z
        next: [{when: 'b == "x"', to: d}, {to: e}]
  - {id: d, kind: end, text: D}
  - {id: e, kind: end, text: E}
"""
    flow, errors = validate_text(text, "t.yaml")
    assert flow is not None, errors
    late = text.replace("""when: 'b == "x"'""", """when: 'missing == "x"'""")
    _, errors = validate_text(late, "t.yaml")
    assert any("missing" in str(e) for e in errors)  # an unknown variable is still refused
