"""Guardrail changes as records: the policy's control log. Pure.

A change of a flow's guardrails (exploration floor, holdout, kill switch, a
promotion) is a :class:`GuardrailChange`: who (``by``), when (``at``), what (the
fields it sets; those it leaves None keep their value) and why (``reason``).
Changes are appended to a log of their own (events.db's ``policy_control``
table in the embedded mode, the ``{prefix}policy-control`` topic in the
distributed mode) and folded in order at every start (:class:`ControlState`):
a flow's guardrails are its configured ones (``LEADFLOW_POLICY_*``) with every
recorded change applied in order, so a restart keeps them, and the log is their
audit trail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from policy.snapshot import Guardrails, SnapshotError

CONTROL_TYPE = "PolicyGuardrailsChanged"
CONTROL_VERSION = 1


class ControlError(ValueError):
    """A control record that cannot be used."""


@dataclass(frozen=True, slots=True)
class PromotionChange:
    """Promote ``edge`` at the point (None: end the point's promotion)."""

    node_id: str
    button_id: str
    edge: str | None


@dataclass(frozen=True, slots=True)
class GuardrailChange:
    flow_id: str
    at: float  # Unix seconds
    by: str  # who made it: "api", "cli:alice", ...
    min_exploration: float | None = None
    holdout: float | None = None
    killed: bool | None = None
    promotions: tuple[PromotionChange, ...] = ()
    reason: str = ""

    def apply(self, rails: Guardrails) -> Guardrails:
        """``rails`` with this change; SnapshotError if the result is out of range."""
        out = Guardrails(
            min_exploration=rails.min_exploration
            if self.min_exploration is None
            else self.min_exploration,
            holdout=rails.holdout if self.holdout is None else self.holdout,
            killed=rails.killed if self.killed is None else self.killed,
            promoted=rails.promoted,
        )
        for p in self.promotions:
            out = out.with_promotion(p.node_id, p.button_id, p.edge)
        return out

    def what(self) -> dict[str, Any]:
        """The fields this change sets."""
        out: dict[str, Any] = {}
        if self.min_exploration is not None:
            out["min_exploration"] = self.min_exploration
        if self.holdout is not None:
            out["holdout"] = self.holdout
        if self.killed is not None:
            out["killed"] = self.killed
        if self.promotions:
            out["promote"] = [
                {"node_id": p.node_id, "button_id": p.button_id, "edge": p.edge}
                for p in self.promotions
            ]
        return out


def encode_change(change: GuardrailChange) -> bytes:
    return orjson.dumps(
        {
            "type": CONTROL_TYPE,
            "v": CONTROL_VERSION,
            "flow_id": change.flow_id,
            "at": change.at,
            "by": change.by,
            "reason": change.reason,
            "change": change.what(),
        }
    )


def _number(raw: dict[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{name} must be a number")
    return float(value)


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise ControlError(f"{name} must be a string")
    return value


def decode_change(data: bytes) -> GuardrailChange:
    """The change in ``data``; ControlError for anything unusable."""
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("type") != CONTROL_TYPE:
        raise ControlError("not a guardrail change")
    if obj.get("v") != CONTROL_VERSION:
        raise ControlError(f"guardrail change format v{obj.get('v')!r} is not supported")
    what = obj.get("change")
    if not isinstance(what, dict):
        raise ControlError("change must be an object")
    killed = what.get("killed")
    if killed is not None and not isinstance(killed, bool):
        raise ControlError("killed must be true or false")
    promotions = []
    for item in what.get("promote", []):
        if not isinstance(item, dict):
            raise ControlError("a promotion must be an object")
        edge = item.get("edge")
        if edge is not None and (not isinstance(edge, str) or not edge):
            raise ControlError("a promotion's edge must be a string or null")
        promotions.append(PromotionChange(_text(item, "node_id"), _text(item, "button_id"), edge))
    at = _number(obj, "at")
    if at is None or not math.isfinite(at):
        raise ControlError("at must be a finite number")
    change = GuardrailChange(
        flow_id=_text(obj, "flow_id"),
        at=at,
        by=_text(obj, "by"),
        min_exploration=_number(what, "min_exploration"),
        holdout=_number(what, "holdout"),
        killed=killed,
        promotions=tuple(promotions),
        reason=_text(obj, "reason") if "reason" in obj else "",
    )
    try:
        change.apply(Guardrails())
    except SnapshotError as exc:
        raise ControlError(str(exc)) from exc
    return change


@dataclass
class ControlState:
    """The fold of the control log: each flow's guardrails and its history."""

    base: Callable[[str], Guardrails]  # the configured guardrails of a flow
    rails: dict[str, Guardrails] = field(default_factory=dict)
    history: dict[str, list[tuple[int, GuardrailChange]]] = field(default_factory=dict)

    def guardrails(self, flow_id: str) -> Guardrails:
        return self.rails.get(flow_id) or self.base(flow_id)

    def fold(self, position: int, change: GuardrailChange) -> Guardrails:
        """Apply the change at ``position`` of the log; a change whose result is
        out of range (it cannot be, once decoded) leaves the guardrails as they are."""
        try:
            rails = change.apply(self.guardrails(change.flow_id))
        except SnapshotError:
            rails = self.guardrails(change.flow_id)
        self.rails[change.flow_id] = rails
        self.history.setdefault(change.flow_id, []).append((position, change))
        return rails

    def audit(self, flow_id: str) -> list[dict[str, Any]]:
        """The flow's changes, oldest first, as JSON-ready records."""
        return [
            {"position": position, "at": c.at, "by": c.by, "reason": c.reason, "change": c.what()}
            for position, c in self.history.get(flow_id, [])
        ]
