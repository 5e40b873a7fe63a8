"""orjson codec for the frozen, versioned messages of :mod:`schemas`.

Every message is a frozen, keyword-only dataclass whose ``type`` and ``v``
fields travel with it. Decoding looks the type up in a registry, refuses a
version it does not know with :class:`UnsupportedVersion`, and rebuilds nested
dataclasses and tuples from their type hints, so a decoded message compares
equal to the one that was encoded.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

import orjson

T = TypeVar("T")


class MessageError(ValueError):
    """A message that cannot be decoded: malformed, unknown type or wrong field types."""


class UnsupportedVersion(MessageError):
    """A message of a known type whose ``v`` this reader does not understand."""


class UnknownType(MessageError):
    """A message whose ``type`` no class is registered for."""


def encode(message: Any) -> bytes:
    return orjson.dumps(message)


Converter = Callable[[Any, str], Any]


def _identity(value: Any, where: str) -> Any:
    return value


def _scalar(hint: type[Any]) -> Converter:
    if hint is float:

        def to_float(value: Any, where: str) -> float:
            if type(value) is float or (type(value) is int):
                return float(value)
            raise MessageError(f"{where}: expected a number, got {type(value).__name__}")

        return to_float
    if hint is int:

        def to_int(value: Any, where: str) -> int:
            if type(value) is int:
                return value
            raise MessageError(f"{where}: expected an integer")

        return to_int

    def exact(value: Any, where: str) -> Any:
        if isinstance(value, hint):
            return value
        raise MessageError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")

    return exact


def _optional(inner: Converter) -> Converter:
    def convert(value: Any, where: str) -> Any:
        return None if value is None else inner(value, where)

    return convert


def _literal(allowed: tuple[Any, ...]) -> Converter:
    def convert(value: Any, where: str) -> Any:
        if value in allowed:
            return value
        raise MessageError(f"{where}: expected one of {list(allowed)}, got {value!r}")

    return convert


def _sequence(item: Converter) -> Converter:
    def convert(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise MessageError(f"{where}: expected a list")
        return tuple(item(x, where) for x in value)

    return convert


def _fixed_tuple(items: tuple[Converter, ...]) -> Converter:
    def convert(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise MessageError(f"{where}: expected a list")
        if len(items) != len(value):
            raise MessageError(f"{where}: expected {len(items)} items")
        return tuple(c(x, where) for c, x in zip(items, value, strict=True))

    return convert


def _mapping(item: Converter) -> Converter:
    def convert(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise MessageError(f"{where}: expected an object")
        return {str(k): item(v, where) for k, v in value.items()}

    return convert


def _nested(cls: type[Any]) -> Converter:
    def convert(value: Any, where: str) -> Any:
        return from_mapping(cls, value, f"{where}.")

    return convert


@cache
def _converter(hint: Any) -> Converter:
    """Compile a type hint into a converter once; decoding then only runs closures."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _identity
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _optional(_converter(inner[0]))
    if origin is typing.Literal:
        return _literal(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(_converter(args[0]))
        return _fixed_tuple(tuple(_converter(a) for a in args))
    if origin in (dict, Mapping):
        return _mapping(_converter(args[1]))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _nested(hint)
    return _scalar(hint)


@cache
def _plan(cls: type[Any]) -> tuple[tuple[str, Converter, bool], ...]:
    """(field name, converter, required) for every field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            _converter(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def from_mapping(cls: type[T], value: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a decoded JSON object, checking field types."""
    if not isinstance(value, dict):
        raise MessageError(f"{where or cls.__name__}: expected an object")
    kwargs: dict[str, Any] = {}
    for name, convert, required in _plan(cls):  # type: ignore[arg-type]
        if name in value:
            kwargs[name] = convert(value[name], where + name)
        elif required:
            raise MessageError(f"{where}{name}: missing")
    return cls(**kwargs)


class Registry:
    """Maps ``type`` names to message classes and their supported versions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[Any]] = {}

    def register(self, cls: type[T]) -> type[T]:
        type_name = cls.__dataclass_fields__["type"].default  # type: ignore[attr-defined]
        self._classes[type_name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def decode_obj(self, obj: Any) -> Any:
        if not isinstance(obj, dict):
            raise MessageError(f"{self.kind}: expected a JSON object")
        type_name = obj.get("type")
        cls = self._classes.get(type_name) if isinstance(type_name, str) else None
        if cls is None:
            raise UnknownType(f"unknown {self.kind} type {type_name!r}")
        version = obj.get("v")
        supported = cls.__dataclass_fields__["v"].default
        if version != supported:
            raise UnsupportedVersion(
                f"{type_name} version {version!r} is not supported (this reader knows v{supported})"
            )
        return from_mapping(cls, obj, "")

    def decode(self, data: bytes | str) -> Any:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MessageError(f"{self.kind}: not valid JSON ({exc})") from exc
        return self.decode_obj(obj)


def registered(registry: Registry) -> Callable[[type[T]], type[T]]:
    return registry.register
