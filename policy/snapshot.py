"""Posterior snapshots: what a fit publishes and every decision reads.

A snapshot belongs to one flow *version* (node ids change between versions) and
holds, per decision point, ``n`` joint posterior draws of the model's terms:

* ``base[s, e]``: the logit of a lead for candidate edge ``e`` in draw ``s``
  at the baseline context;
* ``slopes[s, e, f]``: how feature ``f`` (see :mod:`policy.features`) moves
  that logit for that edge.

The conversion probability of edge ``e`` for a visitor with features ``x`` in
draw ``s`` is ``sigmoid(base[s, e] + slopes[s, e] @ x)``. Arrays travel as
base64 float32 so that a snapshot stays well under Kafka's 1 MB record limit.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from policy.features import FEATURE_NAMES

SNAPSHOT_TYPE = "PolicySnapshot"
SNAPSHOT_VERSION = 1
Array = npt.NDArray[np.float32]


class SnapshotError(ValueError):
    """A snapshot that cannot be used (malformed, or for another flow/version)."""


@dataclass(frozen=True, slots=True)
class Guardrails:
    """``min_exploration``: the least probability any candidate gets (capped at
    1/k); ``holdout``: the share of conversations that always take the flow's
    default edge; ``killed``: every conversation takes the default edge."""

    min_exploration: float = 0.05
    holdout: float = 0.0
    killed: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_exploration <= 1.0:
            raise SnapshotError("min_exploration must be within [0, 1]")
        if not 0.0 <= self.holdout <= 1.0:
            raise SnapshotError("holdout must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class PointPosterior:
    node_id: str
    button_id: str
    candidates: tuple[str, ...]
    base: Array  # (draws, k)
    slopes: Array  # (draws, k, features)

    def __post_init__(self) -> None:
        k = len(self.candidates)
        if k < 2:
            raise SnapshotError(f"{self.node_id}/{self.button_id}: fewer than 2 candidates")
        if self.base.ndim != 2 or self.base.shape[1] != k:
            raise SnapshotError(f"{self.node_id}/{self.button_id}: base must be (draws, {k})")
        if self.slopes.shape != (self.base.shape[0], k, len(FEATURE_NAMES)):
            raise SnapshotError(f"{self.node_id}/{self.button_id}: slopes have the wrong shape")
        if not (np.isfinite(self.base).all() and np.isfinite(self.slopes).all()):
            raise SnapshotError(f"{self.node_id}/{self.button_id}: non-finite draws")

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


def _array(a: npt.NDArray[Any]) -> dict[str, Any]:
    data = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(data.shape), "f32": base64.b64encode(data.tobytes()).decode()}


def _unarray(raw: Any) -> Array:
    try:
        shape = tuple(int(n) for n in raw["shape"])
        data = np.frombuffer(base64.b64decode(raw["f32"]), dtype="<f4")
        return data.reshape(shape).astype(np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"bad array in snapshot: {exc}") from exc


def encode_snapshot(snapshot: PolicySnapshot) -> bytes:
    return orjson.dumps(
        {
            "type": SNAPSHOT_TYPE,
            "v": SNAPSHOT_VERSION,
            "flow_id": snapshot.flow_id,
            "flow_version": snapshot.flow_version,
            "version": snapshot.version,
            "created_at": snapshot.created_at,
            "feature_names": list(snapshot.feature_names),
            "guardrails": {
                "min_exploration": snapshot.guardrails.min_exploration,
                "holdout": snapshot.guardrails.holdout,
                "killed": snapshot.guardrails.killed,
            },
            "diagnostics": dict(snapshot.diagnostics),
            "points": [
                {
                    "node_id": p.node_id,
                    "button_id": p.button_id,
                    "candidates": list(p.candidates),
                    "base": _array(p.base),
                    "slopes": _array(p.slopes),
                }
                for p in snapshot.points.values()
            ],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def decode_snapshot(data: bytes) -> PolicySnapshot:
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("type") != SNAPSHOT_TYPE:
        raise SnapshotError("not a policy snapshot")
    if obj.get("v") != SNAPSHOT_VERSION:
        raise SnapshotError(f"snapshot format v{obj.get('v')!r} is not supported (knows v1)")
    if tuple(obj.get("feature_names", ())) != FEATURE_NAMES:
        raise SnapshotError("snapshot was fitted on other features than this reader uses")
    try:
        points = [
            PointPosterior(
                node_id=str(p["node_id"]),
                button_id=str(p["button_id"]),
                candidates=tuple(str(c) for c in p["candidates"]),
                base=_unarray(p["base"]),
                slopes=_unarray(p["slopes"]),
            )
            for p in obj["points"]
        ]
        rails = obj.get("guardrails", {})
        return PolicySnapshot(
            flow_id=str(obj["flow_id"]),
            flow_version=int(obj["flow_version"]),
            version=str(obj["version"]),
            created_at=float(obj["created_at"]),
            points={p.key: p for p in points},
            guardrails=Guardrails(
                min_exploration=float(rails.get("min_exploration", 0.05)),
                holdout=float(rails.get("holdout", 0.0)),
                killed=bool(rails.get("killed", False)),
            ),
            diagnostics=dict(obj.get("diagnostics", {})),
        )
    except (KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot is missing {exc}") from exc
