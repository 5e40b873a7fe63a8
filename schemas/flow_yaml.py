"""Reading a flow document's YAML without trusting it.

A flow file may come from anyone allowed to publish one, so PyYAML's SafeLoader
is narrowed here to what flows need (JSON's data, YAML 1.2 booleans), and
whatever could make a small file expensive or surprising is refused as a
:class:`FlowRefused` that says where (the list is :class:`_FlowYamlLoader`'s).
:func:`load_yaml` is the one way in; :func:`schemas.flow_validation.parse_document`
turns its refusals into :class:`~schemas.flow_errors.FlowError`.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from schemas.flow_errors import clip
from schemas.flow_limits import MAX_FLOW_DEPTH, MAX_NUMBER_CHARS


class FlowRefused(yaml.MarkedYAMLError):
    """A YAML document that parses but that flows never need and the loader
    refuses: anchors and aliases, duplicate keys, deep nesting, huge numbers."""


def _refuse(problem: str, node_or_event: Any) -> FlowRefused:
    return FlowRefused(problem=problem, problem_mark=getattr(node_or_event, "start_mark", None))


_PLAIN_TAGS = frozenset(
    {
        "!",
        *(
            f"tag:yaml.org,2002:{name}"
            for name in ("str", "int", "float", "bool", "null", "seq", "map")
        ),
    }
)
"""Explicit tags a flow may use: JSON's types. ``!!binary``, ``!!set``,
``!!timestamp``, ``!!omap``, ``!!python/...`` and local tags are refused."""


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _YamlBase(Composer, CParser, SafeConstructor, Resolver):
        """SafeLoader with libyaml's parser (about five times faster) under
        PyYAML's own composer, which :class:`_FlowYamlLoader` guards."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover (PyYAML's wheels ship libyaml)
    _YamlBase = yaml.SafeLoader  # type: ignore[assignment,misc]


class _FlowYamlLoader(_YamlBase):
    """The one YAML loader of flow documents, hardened against hostile files.

    * YAML 1.2 booleans: only true/false. YAML 1.1 would turn a button id such
      as ``yes``, ``no`` or ``on`` into a boolean behind the author's back.
      Likewise no implicit dates: ``text: 2025-01-31`` is text.
    * No anchors (``&a``), aliases (``*a``) or merge keys (``<<``): flows never
      need them, and aliases are what an expansion bomb is made of. No explicit
      tags but JSON's types (``!!str``, ``!!int``, ...): no ``!!binary``, ``!!set``.
    * Collections nest at most :data:`MAX_FLOW_DEPTH` deep (the composer recurses).
    * A key appears once per mapping, and keys are strings (flows are JSON data).
    * Number literals are at most :data:`MAX_NUMBER_CHARS` characters (Python
      refuses, slowly, to convert integers of thousands of digits).
    * Strings are valid Unicode (no unpaired surrogate from a ``\\ud800`` escape).

    Nothing here recurses deeper than the nesting limit, and the document is at
    most :data:`~schemas.flow_limits.MAX_FLOW_BYTES` long before it gets here
    (:func:`schemas.flow_validation.parse_document`).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _refuse("YAML anchors and aliases are not supported in flows", event)
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _PLAIN_TAGS:
            raise _refuse(f"YAML tag {clip(tag)!r} is not supported in flows", event)
        self._depth += 1
        try:
            if self._depth > MAX_FLOW_DEPTH:
                raise _refuse(f"nested more than {MAX_FLOW_DEPTH} levels deep", event)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)  # raises its own error
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _refuse("YAML merge keys (<<) are not supported in flows", key_node)
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise _refuse(f"keys must be strings, not {type(key).__name__}", key_node)
            if key in mapping:
                raise _refuse(f"duplicate key {clip(key)!r}", key_node)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # a constructor choking on a value, e.g. `!!float abc`
            raise _refuse(f"cannot read this value ({clip(str(exc))})", node) from None

    def construct_yaml_int(self, node: Any) -> int:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise _refuse(f"number longer than {MAX_NUMBER_CHARS} characters", node)
        value: int = super().construct_yaml_int(node)
        return value

    def construct_yaml_float(self, node: Any) -> float:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise _refuse(f"number longer than {MAX_NUMBER_CHARS} characters", node)
        value: float = super().construct_yaml_float(node)
        return value

    def construct_yaml_str(self, node: Any) -> str:
        value: str = super().construct_yaml_str(node)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "a string holds an unpaired surrogate (a \\ud800-style escape)"
            raise _refuse(problem, node) from None
        return value


_FlowYamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}
_FlowYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
for _tag, _construct in (
    ("tag:yaml.org,2002:int", _FlowYamlLoader.construct_yaml_int),
    ("tag:yaml.org,2002:float", _FlowYamlLoader.construct_yaml_float),
    ("tag:yaml.org,2002:str", _FlowYamlLoader.construct_yaml_str),
):
    _FlowYamlLoader.add_constructor(_tag, _construct)  # type: ignore[type-var]


def load_yaml(text: str) -> Any:
    """The one YAML document in ``text`` as plain data; raises :class:`FlowRefused`
    for what flows never need, or PyYAML's own error for a syntax error."""
    loader = _FlowYamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
