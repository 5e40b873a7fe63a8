"""The codec's converters (schemas/codec.py) on a probe message that has one field
of each kind of type hint: what each accepts, what it refuses and how the
refusal names the field. The real messages' round trips are in test_codec.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pytest

from schemas.codec import (
    MessageError,
    Registry,
    UnknownType,
    UnsupportedVersion,
    encode,
    from_mapping,
)

PROBES = Registry("probe")


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    x: float
    label: str = ""


@PROBES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    count: int
    ratio: float
    flag: bool
    name: str
    kind: Literal["a", "b"] = "a"
    pair: tuple[int, str] = (0, "")
    items: tuple[int, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    anything: Any = None
    point: Point = field(default_factory=lambda: Point(x=0.0))
    points: tuple[Point, ...] = ()
    type: Literal["Probe"] = "Probe"
    v: int = 2


@PROBES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class Empty:
    type: Literal["Empty"] = "Empty"
    v: int = 1


FULL = Probe(
    count=3,
    ratio=0.5,
    flag=True,
    name="n",
    kind="b",
    pair=(7, "seven"),
    items=(1, 2, 3),
    scores={"x": 1.5},
    note="hello",
    anything={"free": ["form", 1]},
    point=Point(x=1.0, label="p"),
    points=(Point(x=2.0), Point(x=3.0, label="q")),
)


def obj(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = orjson.loads(encode(FULL))
    return {**base, **changes}


def refusal(**changes: Any) -> str:
    with pytest.raises(MessageError) as info:
        PROBES.decode_obj(obj(**changes))
    return str(info.value)


def test_every_kind_of_field_round_trips_to_an_equal_message() -> None:
    decoded = PROBES.decode(encode(FULL))
    assert decoded == FULL
    assert isinstance(decoded.pair, tuple) and isinstance(decoded.points[1], Point)


def test_text_input_decodes_like_bytes() -> None:
    assert PROBES.decode(encode(FULL).decode()) == FULL


def test_only_the_required_fields_are_needed() -> None:
    minimal = {"type": "Probe", "v": 2, "count": 1, "ratio": 1, "flag": False, "name": ""}
    assert PROBES.decode_obj(minimal) == Probe(count=1, ratio=1.0, flag=False, name="")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ratio": True}, "ratio: expected a number, got bool"),
        ({"ratio": "0.5"}, "ratio: expected a number, got str"),
        ({"ratio": None}, "ratio: expected a number, got NoneType"),
        ({"count": 1.0}, "count: expected an integer"),
        ({"count": False}, "count: expected an integer"),
        ({"flag": 0}, "flag: expected bool, got int"),
        ({"name": ["n"]}, "name: expected str, got list"),
    ],
    ids=["float-bool", "float-str", "float-null", "int-float", "int-bool", "bool-int", "str-list"],
)
def test_scalars_are_not_coerced(changes: dict[str, Any], message: str) -> None:
    assert refusal(**changes) == message


def test_a_literal_lists_what_it_allows() -> None:
    assert refusal(kind="c") == "kind: expected one of ['a', 'b'], got 'c'"


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ([7], "pair: expected 2 items"),
        ([7, "seven", 8], "pair: expected 2 items"),
        ({"0": 7}, "pair: expected a list"),
        (["7", "seven"], "pair: expected an integer"),
    ],
)
def test_a_fixed_tuple_checks_its_length_and_each_item(pair: Any, message: str) -> None:
    assert refusal(pair=pair) == message


def test_a_variable_tuple_checks_every_item() -> None:
    assert refusal(items=[1, 2, "3"]) == "items: expected an integer"
    assert refusal(items="123") == "items: expected a list"
    assert PROBES.decode_obj(obj(items=[])).items == ()


def test_a_mapping_needs_an_object_and_checks_its_values() -> None:
    assert refusal(scores=[["x", 1.5]]) == "scores: expected an object"
    assert refusal(scores={"x": "high"}) == "scores: expected a number, got str"
    assert PROBES.decode_obj(obj(scores={"y": 2})).scores == {"y": 2.0}


def test_an_optional_field_takes_null_or_its_type() -> None:
    assert PROBES.decode_obj(obj(note=None)).note is None
    assert refusal(note=5) == "note: expected str, got int"


def test_an_any_field_passes_whatever_json_holds() -> None:
    for value in (None, 1, "x", [1, {"a": None}], {"k": [True]}):
        assert PROBES.decode_obj(obj(anything=value)).anything == value


def test_nested_messages_name_the_dotted_path() -> None:
    assert refusal(point={"x": "far"}) == "point.x: expected a number, got str"
    assert refusal(point={"label": "no x"}) == "point.x: missing"
    assert re.fullmatch(r"point\.?: expected an object", refusal(point=[1.0]))
    assert refusal(points=[{"x": 1}, {"x": 2, "label": 3}]) == (
        "points.label: expected str, got int"
    )


def test_from_mapping_names_the_class_when_the_value_is_not_an_object() -> None:
    with pytest.raises(MessageError, match=r"^Point: expected an object$"):
        from_mapping(Point, [1.0])
    assert from_mapping(Point, {"x": 2}) == Point(x=2.0)


def test_unknown_keys_are_ignored() -> None:
    """A newer writer may add optional fields: an older reader skips them."""
    assert PROBES.decode_obj(obj(added_later={"x": 1})) == FULL


def test_the_version_is_the_class_default_and_nothing_else() -> None:
    with pytest.raises(UnsupportedVersion, match=r"Probe version 1 .*knows v2"):
        PROBES.decode_obj(obj(v=1))
    with pytest.raises(UnsupportedVersion, match="Probe version None"):
        PROBES.decode_obj({k: v for k, v in obj().items() if k != "v"})
    with pytest.raises(UnsupportedVersion, match="version '2'"):
        PROBES.decode_obj(obj(v="2"))


@pytest.mark.parametrize("type_name", ["Nope", 5, None, ["Probe"]])
def test_an_unknown_or_non_string_type_is_unknown(type_name: Any) -> None:
    with pytest.raises(UnknownType, match=re.escape(f"unknown probe type {type_name!r}")):
        PROBES.decode_obj(obj(type=type_name))


def test_refusals_are_all_message_errors_named_after_the_registry() -> None:
    assert issubclass(UnknownType, MessageError) and issubclass(UnsupportedVersion, MessageError)
    assert issubclass(MessageError, ValueError)
    with pytest.raises(MessageError, match=r"^probe: expected a JSON object$"):
        PROBES.decode(b"[]")
    with pytest.raises(MessageError, match=r"^probe: not valid JSON"):
        PROBES.decode(b'{"type": ')


def test_the_registry_lists_its_types_sorted() -> None:
    assert PROBES.names() == ["Empty", "Probe"]
    assert PROBES.decode(b'{"type":"Empty","v":1}') == Empty()
