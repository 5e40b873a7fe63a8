"""Posterior snapshots: what a fit publishes and every decision reads.

A snapshot belongs to one flow *version* (node ids change between versions) and
holds, per decision point, ``n`` joint posterior draws of the model's terms:

* ``base[s, e]``: the logit of a lead for candidate edge ``e`` in draw ``s``
  at the baseline context;
* ``slopes[s, e, f]``: how feature ``f`` (see :mod:`policy.features`) moves
  that logit for that edge;
* optionally, ``answers`` (the names ``answer:{node}={button}`` of the earlier
  answers the point's posterior knows, in a fixed order) and
  ``answer_slopes[s, e, a]``: how having given answer ``a`` before the decision
  moves the logit.

The conversion probability of edge ``e`` for a visitor with cell features ``x``
and answer features ``y`` (0/1) in draw ``s`` is ``sigmoid(base[s, e] +
slopes[s, e] @ x + answer_slopes[s, e] @ y)``. Arrays travel as base64 float32
so that a snapshot stays well under Kafka's 1 MB record limit.

Format versions: a snapshot none of whose points knows answers is written as
v1, byte for byte as before answers existed (PyMC fits and their conjugate
updates); one with answer features is written as v2, which adds
``answers`` and ``answer_slopes`` to its points. Both are read; a reader that
knows only v1 refuses a v2 snapshot (and keeps the one it has) rather than
deciding without the answers and logging decisions a replay could not repeat.
A snapshot whose guardrails promote an edge somewhere (``Guardrails.promoted``)
is written as v3, which adds ``guardrails.promoted``; v1 and v2 bytes are
unchanged without promotions, and a reader that knows only v1 and v2 refuses a
v3 snapshot for the same reason.
A snapshot with context interactions (a point lists ``pairs``, products of two
cell features, :data:`~policy.features.PAIR_NAMES`) is written as v4, which adds
``pairs`` and ``pair_slopes`` to its points (answers and promotions as in v2 and
v3); v1 to v3 bytes are unchanged without pairs, and a reader that knows only v1
to v3 refuses a v4 snapshot. The logit of a visitor adds, after the cell
features' slopes, the slope of each of the point's pairs the cell has (in the
point's order), then the answers'.

:func:`decode_snapshot` raises :class:`SnapshotError` (and nothing else) for
any input it cannot use: not JSON, not a snapshot, another format version,
other features than :data:`~policy.features.FEATURE_NAMES`, missing or
mistyped fields, arrays of the wrong size or shape, non-finite draws, a
decision point listed twice, guardrails out of range.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from policy.features import ANSWER_PREFIX, FEATURE_NAMES, PAIR_INDEX

if TYPE_CHECKING:
    from policy.archive import GaussianPosterior

SNAPSHOT_TYPE = "PolicySnapshot"
SNAPSHOT_VERSION = 4  # the newest format written; v1 (no answers) is written when it suffices
ANSWERS_VERSION = 2  # answer features, no promotions
PROMOTED_VERSION = 3  # promotions in the guardrails (with or without answer features)
PAIRS_VERSION = 4  # context interactions (with or without answers and promotions)
READABLE_VERSIONS = (1, 2, 3, 4)
Array = npt.NDArray[np.float32]


class SnapshotError(ValueError):
    """A snapshot that cannot be used (malformed, or for another flow/version)."""


_NO_ANSWER_SLOPES: Array = np.zeros((0, 0, 0), np.float32)


@dataclass(frozen=True, slots=True)
class Promotion:
    """At decision point (``node_id``, ``button_id``), every decision outside the
    holdout takes ``edge``."""

    node_id: str
    button_id: str
    edge: str

    def __post_init__(self) -> None:
        if not all(isinstance(v, str) and v for v in (self.node_id, self.button_id, self.edge)):
            raise SnapshotError("a promotion's node_id, button_id and edge are non-empty strings")

    @property
    def key(self) -> tuple[str, str]:
        return (self.node_id, self.button_id)


@dataclass(frozen=True, slots=True)
class Guardrails:
    """``min_exploration``: the least probability any candidate gets (capped at
    1/k); ``holdout``: the share of conversations that always take the flow's
    default edge; ``killed``: every decision of the flow (any of its versions)
    takes the default edge; ``promoted``: decision points where every decision
    outside the holdout takes one edge (no exploration there; the holdout still
    takes the default edge, so uplift stays measurable), sorted by point, at most
    one per point. A promotion naming a point or an edge the snapshot's flow
    version does not have is ignored by the decision."""

    min_exploration: float = 0.05
    holdout: float = 0.0
    killed: bool = False
    promoted: tuple[Promotion, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_exploration <= 1.0:
            raise SnapshotError("min_exploration must be within [0, 1]")
        if not 0.0 <= self.holdout <= 1.0:
            raise SnapshotError("holdout must be within [0, 1]")
        promoted = tuple(sorted(self.promoted, key=lambda p: p.key))
        if len({p.key for p in promoted}) != len(promoted):
            raise SnapshotError("a decision point is promoted twice")
        object.__setattr__(self, "promoted", promoted)

    def promoted_edges(self) -> dict[tuple[str, str], str]:
        return {p.key: p.edge for p in self.promoted}

    def with_promotion(self, node_id: str, button_id: str, edge: str | None) -> Guardrails:
        """These guardrails with the point promoted to ``edge`` (None: not promoted)."""
        kept = tuple(p for p in self.promoted if p.key != (node_id, button_id))
        added = () if edge is None else (Promotion(node_id, button_id, edge),)
        return Guardrails(self.min_exploration, self.holdout, self.killed, kept + added)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``dataclasses.asdict`` gives, with lists)."""
        return {
            "min_exploration": self.min_exploration,
            "holdout": self.holdout,
            "killed": self.killed,
            "promoted": encode_promoted(self.promoted),
        }


def encode_promoted(promoted: tuple[Promotion, ...]) -> list[dict[str, str]]:
    return [{"node_id": p.node_id, "button_id": p.button_id, "edge": p.edge} for p in promoted]


def decode_promoted(raw: Any) -> tuple[Promotion, ...]:
    """The promotions of :func:`encode_promoted`'s list; SnapshotError when malformed."""
    if not isinstance(raw, list):
        raise SnapshotError("promoted must be a list")
    out: list[Promotion] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"node_id", "button_id", "edge"}:
            raise SnapshotError("a promotion must be {node_id, button_id, edge}")
        out.append(Promotion(item["node_id"], item["button_id"], item["edge"]))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PointPosterior:
    node_id: str
    button_id: str
    candidates: tuple[str, ...]
    base: Array  # (draws, k)
    slopes: Array  # (draws, k, features)
    answers: tuple[str, ...] = ()  # answer feature names, "answer:{node}={button}"
    answer_slopes: Array = field(default_factory=lambda: _NO_ANSWER_SLOPES)  # (draws, k, A)
    pairs: tuple[str, ...] = ()  # context interactions, names of PAIR_NAMES
    pair_slopes: Array = field(default_factory=lambda: _NO_ANSWER_SLOPES)  # (draws, k, P)

    def __post_init__(self) -> None:
        k = len(self.candidates)
        if not self.answers and self.answer_slopes.size == 0:
            empty = np.zeros((self.base.shape[0] if self.base.ndim else 0, k, 0), np.float32)
            object.__setattr__(self, "answer_slopes", empty)
        if not self.pairs and self.pair_slopes.size == 0:
            empty = np.zeros((self.base.shape[0] if self.base.ndim else 0, k, 0), np.float32)
            object.__setattr__(self, "pair_slopes", empty)
        if k < 2:
            raise SnapshotError(f"{self.node_id}/{self.button_id}: fewer than 2 candidates")
        if self.base.ndim != 2 or self.base.shape[1] != k:
            raise SnapshotError(f"{self.node_id}/{self.button_id}: base must be (draws, {k})")
        if self.base.shape[0] < 1:
            raise SnapshotError(f"{self.node_id}/{self.button_id}: no posterior draws")
        if self.slopes.shape != (self.base.shape[0], k, len(FEATURE_NAMES)):
            raise SnapshotError(f"{self.node_id}/{self.button_id}: slopes have the wrong shape")
        if not (np.isfinite(self.base).all() and np.isfinite(self.slopes).all()):
            raise SnapshotError(f"{self.node_id}/{self.button_id}: non-finite draws")
        where = f"{self.node_id}/{self.button_id}"
        if len(set(self.answers)) != len(self.answers):
            raise SnapshotError(f"{where}: an answer feature is listed twice")
        for name in self.answers:
            node, sep, button = name.removeprefix(ANSWER_PREFIX).partition("=")
            if not name.startswith(ANSWER_PREFIX) or not sep or not node or not button:
                raise SnapshotError(f"{where}: {name!r} is not an answer feature")
        if self.answer_slopes.shape != (self.base.shape[0], k, len(self.answers)):
            raise SnapshotError(f"{where}: answer_slopes have the wrong shape")
        if not np.isfinite(self.answer_slopes).all():
            raise SnapshotError(f"{where}: non-finite draws")
        if len(set(self.pairs)) != len(self.pairs):
            raise SnapshotError(f"{where}: a pair feature is listed twice")
        for name in self.pairs:
            if name not in PAIR_INDEX:
                raise SnapshotError(f"{where}: {name!r} is not a pair feature")
        if self.pair_slopes.shape != (self.base.shape[0], k, len(self.pairs)):
            raise SnapshotError(f"{where}: pair_slopes have the wrong shape")
        if not np.isfinite(self.pair_slopes).all():
            raise SnapshotError(f"{where}: non-finite draws")

    @property
    def key(self) -> tuple[str, str]:
        return (self.node_id, self.button_id)


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    flow_id: str
    flow_version: int
    version: str  # unique per published snapshot, e.g. "solar-quote@1#7"
    created_at: float
    points: Mapping[tuple[str, str], PointPosterior]
    guardrails: Guardrails = field(default_factory=Guardrails)
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] = FEATURE_NAMES
    # what the draws were drawn from, when known (the online learner's posterior): the
    # archive keeps it instead of the draws (policy.archive); never encoded, never compared
    source: GaussianPosterior | None = field(default=None, compare=False, repr=False)


def _array(a: npt.NDArray[Any]) -> dict[str, Any]:
    data = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(data.shape), "f32": base64.b64encode(data.tobytes()).decode()}


def _unarray(raw: Any, what: str) -> Array:
    try:
        shape = tuple(int(n) for n in raw["shape"])
        data = np.frombuffer(base64.b64decode(raw["f32"], validate=True), dtype="<f4")
        return data.reshape(shape).astype(np.float32)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SnapshotError(f"bad array {what} in snapshot: {exc}") from exc


def _encode_point(p: PointPosterior) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "node_id": p.node_id,
        "button_id": p.button_id,
        "candidates": list(p.candidates),
        "base": _array(p.base),
        "slopes": _array(p.slopes),
    }
    if p.answers:
        raw["answers"] = list(p.answers)
        raw["answer_slopes"] = _array(p.answer_slopes)
    if p.pairs:
        raw["pairs"] = list(p.pairs)
        raw["pair_slopes"] = _array(p.pair_slopes)
    return raw


def encode_snapshot(snapshot: PolicySnapshot) -> bytes:
    """The snapshot's bytes: v1 (as before answers) unless a point knows answers
    (v2) or the guardrails promote an edge (v3) or a point knows pairs (v4)."""
    answers = any(p.answers for p in snapshot.points.values())
    pairs = any(p.pairs for p in snapshot.points.values())
    promoted = snapshot.guardrails.promoted
    rails: dict[str, Any] = {
        "min_exploration": snapshot.guardrails.min_exploration,
        "holdout": snapshot.guardrails.holdout,
        "killed": snapshot.guardrails.killed,
    }
    if promoted:
        rails["promoted"] = encode_promoted(promoted)
    v = (
        PAIRS_VERSION
        if pairs
        else PROMOTED_VERSION
        if promoted
        else ANSWERS_VERSION
        if answers
        else 1
    )
    return orjson.dumps(
        {
            "type": SNAPSHOT_TYPE,
            "v": v,
            "flow_id": snapshot.flow_id,
            "flow_version": snapshot.flow_version,
            "version": snapshot.version,
            "created_at": snapshot.created_at,
            "feature_names": list(snapshot.feature_names),
            "guardrails": rails,
            "diagnostics": dict(snapshot.diagnostics),
            "points": [_encode_point(p) for p in snapshot.points.values()],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise SnapshotError(f"snapshot is missing {name!r}")
    value = obj[name]
    # bool is an int: a flag is never a number, a number never a flag
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SnapshotError(f"snapshot field {name!r} has the wrong type")
    return value


def _number(obj: dict[str, Any], name: str, default: float) -> float:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SnapshotError(f"snapshot field {name!r} must be a number")
    return float(value)


def _point(raw: Any, v: int) -> PointPosterior:
    if not isinstance(raw, dict):
        raise SnapshotError("a snapshot point must be an object")
    node_id = _field(raw, "node_id", str)
    button_id = _field(raw, "button_id", str)
    candidates = _field(raw, "candidates", list)
    if not all(isinstance(c, str) for c in candidates):
        raise SnapshotError(f"{node_id}/{button_id}: candidates must be strings")
    answers: list[str] = []
    slopes = _NO_ANSWER_SLOPES
    if v >= 2 and ("answers" in raw or "answer_slopes" in raw):
        answers = _field(raw, "answers", list)
        if not all(isinstance(a, str) for a in answers):
            raise SnapshotError(f"{node_id}/{button_id}: answers must be strings")
        slopes = _unarray(raw.get("answer_slopes"), f"{node_id}/{button_id}.answer_slopes")
    pairs: list[str] = []
    pair_slopes = _NO_ANSWER_SLOPES
    if v >= PAIRS_VERSION and ("pairs" in raw or "pair_slopes" in raw):
        pairs = _field(raw, "pairs", list)
        if not all(isinstance(a, str) for a in pairs):
            raise SnapshotError(f"{node_id}/{button_id}: pairs must be strings")
        pair_slopes = _unarray(raw.get("pair_slopes"), f"{node_id}/{button_id}.pair_slopes")
    return PointPosterior(
        node_id=node_id,
        button_id=button_id,
        candidates=tuple(candidates),
        base=_unarray(raw.get("base"), f"{node_id}/{button_id}.base"),
        slopes=_unarray(raw.get("slopes"), f"{node_id}/{button_id}.slopes"),
        answers=tuple(answers),
        answer_slopes=slopes,
        pairs=tuple(pairs),
        pair_slopes=pair_slopes,
    )


def decode_snapshot(data: bytes) -> PolicySnapshot:
    """The snapshot in ``data``; :class:`SnapshotError` for anything unusable."""
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("type") != SNAPSHOT_TYPE:
        raise SnapshotError("not a policy snapshot")
    v = obj.get("v")
    if isinstance(v, bool) or v not in READABLE_VERSIONS:
        raise SnapshotError(
            f"snapshot format v{v!r} is not supported (knows v1 to v{SNAPSHOT_VERSION})"
        )
    names = obj.get("feature_names")
    if not isinstance(names, list) or tuple(names) != FEATURE_NAMES:
        raise SnapshotError("snapshot was fitted on other features than this reader uses")
    created_at = _number(obj, "created_at", math.nan)
    if not math.isfinite(created_at):
        raise SnapshotError("snapshot field 'created_at' must be a finite number")
    rails = obj.get("guardrails", {})
    diagnostics = obj.get("diagnostics", {})
    if not isinstance(rails, dict) or not isinstance(diagnostics, dict):
        raise SnapshotError("snapshot guardrails and diagnostics must be objects")
    killed = rails.get("killed", False)
    if not isinstance(killed, bool):
        raise SnapshotError("snapshot guardrail 'killed' must be true or false")
    promoted = decode_promoted(rails["promoted"]) if v >= 3 and "promoted" in rails else ()
    points: dict[tuple[str, str], PointPosterior] = {}
    for raw in _field(obj, "points", list):
        point = _point(raw, v)
        if point.key in points:
            raise SnapshotError(f"snapshot lists decision point {point.key} twice")
        points[point.key] = point
    return PolicySnapshot(
        flow_id=_field(obj, "flow_id", str),
        flow_version=_field(obj, "flow_version", int),
        version=_field(obj, "version", str),
        created_at=created_at,
        points=points,
        guardrails=Guardrails(
            min_exploration=_number(rails, "min_exploration", 0.05),
            holdout=_number(rails, "holdout", 0.0),
            killed=killed,
            promoted=promoted,
        ),
        diagnostics=diagnostics,
    )
