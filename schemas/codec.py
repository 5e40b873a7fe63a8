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


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is typing.Literal:
        if value not in args:
            raise MessageError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise MessageError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, where) for item in value)
        if len(args) != len(value):
            raise MessageError(f"{where}: expected {len(args)} items")
        return tuple(_convert(a, item, where) for a, item in zip(args, value, strict=True))
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise MessageError(f"{where}: expected an object")
        return {str(k): _convert(args[1], v, where) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, f"{where}.")
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise MessageError(f"{where}: expected an integer")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise MessageError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def from_mapping(cls: type[T], value: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a decoded JSON object, checking field types."""
    if not isinstance(value, dict):
        raise MessageError(f"{where or cls.__name__}: expected an object")
    kwargs: dict[str, Any] = {}
    hints = _hints(cls)  # type: ignore[arg-type]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{where}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MessageError(f"{where}{f.name}: missing")
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
