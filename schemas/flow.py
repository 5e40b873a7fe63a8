"""The flow graph: frozen types for a quiz bot's directed graph of messages.

A flow is authored as YAML or JSON (see ``flow.schema.json`` and docs/flows.md)
and parsed into these types only after structural and semantic validation
passed (:mod:`schemas.flow_validation`). Everything here is immutable so that
one parsed flow can be shared by every conversation and every worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schemas.flow_timers import NO_TIMERS, FlowTimers, parse_timers
from schemas.locales import declared_locales, fallback_locale, pick_locale, resolve

MAX_AUTO_ADVANCE = 64
"""How many nodes one command may enter: message nodes auto-advance, so a run
of messages longer than this is refused by validation (and by the decider)."""


class NodeKind(StrEnum):
    MESSAGE = "message"
    QUESTION = "question"
    LEAD_FORM = "lead_form"
    INPUT = "input"
    END = "end"


WAITING_KINDS = frozenset({NodeKind.QUESTION, NodeKind.INPUT, NodeKind.LEAD_FORM})
"""The kinds of node at which a conversation waits for the visitor: where the idle
nudge and abandonment can fire (and where the nudge's ``to`` may lead from)."""


class InputType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    EMAIL = "email"
    PHONE = "phone"
    DATE = "date"
    CHOICE = "choice"


DEFAULT_MAX_LENGTH = 500
"""An input's ``max_length`` when the flow does not say (at most MAX_ANSWER_CHARS)."""
MAX_ANSWER_CHARS = 1000
"""The longest free-text answer any input takes (the answer frame's bound too)."""


class FieldType(StrEnum):
    TEXT = "text"
    EMAIL = "email"
    PHONE = "phone"
    CONSENT = "consent"


@dataclass(frozen=True, slots=True)
class Branch:
    """One item of a conditional ``next``: go to ``to`` when ``when`` holds (the
    source text of a condition, :mod:`schemas.expression_parser`); the item
    without ``when`` is the default. ``to`` of two or more nodes is a decision
    point."""

    when: str | None
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Button:
    """A visitor's answer. More than one candidate makes it a decision point.

    The first candidate is the flow's *default edge*: the one a holdout group
    or a kill switch falls back to. A button with ``branches`` (a conditional
    ``next``) has as ``next`` the candidates of its one decision point if it has
    one, else its default branch's target: what the policy and the reports
    read; the decider follows ``branches``.
    """

    id: str
    label: str
    next: tuple[str, ...]
    branches: tuple[Branch, ...] = ()

    @property
    def is_decision_point(self) -> bool:
        return len(self.next) > 1

    def targets(self) -> tuple[str, ...]:
        """Every node this button can lead to, in authoring order, without repeats."""
        if not self.branches:
            return self.next
        return tuple(dict.fromkeys(t for branch in self.branches for t in branch.to))


@dataclass(frozen=True, slots=True)
class Choice:
    """``labels``: the label in every locale of the flow (a typed answer matching
    any of them picks the choice, whatever language the visitor was shown)."""

    id: str
    label: str
    labels: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What an ``input`` node accepts; ``personal`` answers are sealed with the
    conversation key (the default: free text is personal unless the flow says not)."""

    type: InputType = InputType.TEXT
    max_length: int = DEFAULT_MAX_LENGTH
    min: float | None = None
    max: float | None = None
    choices: tuple[Choice, ...] = ()
    other: bool = False
    placeholder: str = ""
    skippable: bool = False
    personal: bool = True

    def choice(self, choice_id: str) -> Choice | None:
        for choice in self.choices:
            if choice.id == choice_id:
                return choice
        return None


@dataclass(frozen=True, slots=True)
class Image:
    src: str
    alt: str


@dataclass(frozen=True, slots=True)
class LeadField:
    name: str
    type: FieldType
    label: str
    required: bool


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: NodeKind
    text: str
    buttons: tuple[Button, ...] = ()
    fields: tuple[LeadField, ...] = ()
    next: str | None = None
    branches: tuple[Branch, ...] = ()
    input: InputSpec | None = None
    image: Image | None = None
    store_as: str = ""

    @property
    def variable(self) -> str:
        """The name its answer is stored under: ``store_as`` or the node's id."""
        return self.store_as or self.id

    def button(self, button_id: str) -> Button | None:
        for button in self.buttons:
            if button.id == button_id:
                return button
        return None

    def successors(self) -> tuple[str, ...]:
        """Every node this node can lead to, in authoring order."""
        if self.branches:
            return tuple(dict.fromkeys(t for branch in self.branches for t in branch.to))
        if self.next is not None:
            return (self.next,)
        return tuple(target for button in self.buttons for target in button.targets())


@dataclass(frozen=True, slots=True)
class Flow:
    """One version of a flow. ``nodes`` hold the texts of the fallback locale
    (``locales[0]``), which everything but replies reads; ``translations`` holds,
    for every other declared locale, the same flow with that locale's texts
    (parsed once, when the flow is: see :meth:`for_locale`)."""

    id: str
    version: int
    start: str
    nodes: Mapping[str, Node] = field(hash=False)
    title: str = ""
    locales: tuple[str, ...] = ()
    translations: Mapping[str, Flow] = field(
        default_factory=dict, hash=False, compare=False, repr=False
    )
    timers: FlowTimers = NO_TIMERS  # the idle nudge and abandonment (schemas.flow_timers)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def for_locale(self, visitor_locale: str) -> Flow:
        """This flow with the texts of the declared locale that ``visitor_locale``
        picks (:func:`schemas.locales.pick_locale`); itself for the fallback, and
        for a flow without locales. Only texts differ: ids, edges and conditions
        are the same in every locale."""
        if not self.translations:
            return self
        return self.translations.get(pick_locale(self.locales, visitor_locale), self)

    @property
    def key(self) -> str:
        """``id@version``: how events and snapshots name one version of a flow."""
        return f"{self.id}@{self.version}"

    def decision_points(self) -> list[tuple[str, str]]:
        return [
            (node.id, button.id)
            for node in self.nodes.values()
            for button in node.buttons
            if button.is_decision_point
        ]


def _as_targets(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def is_conditional(value: Any) -> bool:
    """Whether a ``next`` value is a list of ``{when, to}`` items."""
    return isinstance(value, list) and any(isinstance(item, dict) for item in value)


def parse_branches(value: Any) -> tuple[Branch, ...]:
    if not is_conditional(value):
        return ()
    return tuple(
        Branch(when=item.get("when"), to=_as_targets(item.get("to", ())))
        for item in value
        if isinstance(item, dict)
    )


def _summary(branches: tuple[Branch, ...]) -> tuple[str, ...]:
    """A conditional next as the one tuple older readers know: its decision
    point's candidates if it has one, else its default's (or first) target."""
    for branch in branches:
        if len(branch.to) > 1:
            return branch.to
    default = [b for b in branches if b.when is None] or list(branches[:1])
    return default[0].to if default else ()


@dataclass(frozen=True, slots=True)
class _Texts:
    """Which locale's texts a parse picks: ``locale``, else ``fallback``."""

    locale: str = ""
    fallback: str = ""

    def __call__(self, value: Any, default: str = "") -> str:
        return default if value is None else resolve(value, self.locale, self.fallback)


_PLAIN = _Texts()


def _button(raw: Mapping[str, Any], texts: _Texts) -> Button:
    branches = parse_branches(raw["next"])
    label = texts(raw["label"])
    if branches:
        return Button(id=raw["id"], label=label, next=_summary(branches), branches=branches)
    return Button(id=raw["id"], label=label, next=_as_targets(raw["next"]))


def _every(value: Any) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        return tuple(dict.fromkeys(v for v in value.values() if isinstance(v, str)))
    return (value,) if isinstance(value, str) else ()


def _input(raw: Any, texts: _Texts) -> InputSpec | None:
    if not isinstance(raw, Mapping):
        return None
    kind = InputType(raw.get("type", "text"))
    return InputSpec(
        type=kind,
        max_length=int(raw.get("max_length", DEFAULT_MAX_LENGTH)),
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        choices=tuple(
            Choice(
                id=c["id"],
                label=texts(c["label"]),
                labels=_every(c["label"]) if isinstance(c["label"], Mapping) else (),
            )
            for c in raw.get("choices", ())
        ),
        other=bool(raw.get("other", False)),
        placeholder=texts(raw.get("placeholder"), ""),
        skippable=bool(raw.get("skippable", False)),
        personal=bool(raw.get("personal", True)),
    )


def parse_node(raw: Mapping[str, Any], texts: _Texts = _PLAIN) -> Node:
    """One node; ``texts`` picks the locale of texts given per locale (by
    default each mapping's first entry: see :func:`flow_from_document`)."""
    buttons = tuple(_button(b, texts) for b in raw.get("buttons", ()))
    fields = tuple(
        LeadField(
            name=f["name"],
            type=FieldType(f.get("type", "text")),
            label=texts(f.get("label"), f["name"]),
            required=bool(f.get("required", False)),
        )
        for f in raw.get("fields", ())
    )
    raw_next = raw.get("next")
    branches = parse_branches(raw_next)
    summary = _summary(branches)
    image = raw.get("image")
    return Node(
        id=raw["id"],
        kind=NodeKind(raw["kind"]),
        text=texts(raw.get("text"), ""),
        buttons=buttons,
        fields=fields,
        next=(summary[0] if summary else None) if branches else raw_next,
        branches=branches,
        input=_input(raw.get("input", {}), texts) if raw["kind"] == "input" else None,
        image=Image(src=image["src"], alt=texts(image["alt"]))
        if isinstance(image, Mapping)
        else None,
        store_as=raw.get("store_as", ""),
    )


def parse_nodes(doc: Mapping[str, Any], locale: str = "") -> list[Node]:
    """Every authored node (duplicates included), with the texts of ``locale``
    (by default the fallback locale's)."""
    fallback = fallback_locale(doc)
    texts = _Texts(locale or fallback, fallback)
    return [parse_node(raw, texts) for raw in doc["nodes"]]


def _flow(
    doc: Mapping[str, Any], locale: str = "", translations: Mapping[str, Flow] | None = None
) -> Flow:
    return Flow(
        id=doc["id"],
        version=int(doc["version"]),
        start=doc["start"],
        nodes={node.id: node for node in parse_nodes(doc, locale)},
        title=doc.get("title", ""),
        locales=declared_locales(doc),
        translations=translations or {},
        timers=parse_timers(doc.get("timers"), _Texts(locale or fallback_locale(doc))),
    )


def flow_from_document(doc: Mapping[str, Any]) -> Flow:
    """Build a :class:`Flow` from a document that already passed validation: the
    fallback locale's texts, and a translation per other declared locale."""
    locales = declared_locales(doc)
    return _flow(doc, "", {locale: _flow(doc, locale) for locale in locales[1:]})
