"""Posterior snapshots: validation, and the codec (round trip, clear errors)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from policy.features import FEATURE_NAMES
from policy.snapshot import (
    Guardrails,
    PointPosterior,
    PolicySnapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)

F = len(FEATURE_NAMES)


def posterior(node_id: str = "q1", k: int = 3, draws: int = 8, seed: int = 1) -> PointPosterior:
    rng = np.random.default_rng(seed)
    return PointPosterior(
        node_id=node_id,
        button_id="b",
        candidates=tuple(f"{node_id}-e{i}" for i in range(k)),
        base=rng.normal(-2.0, 1.0, size=(draws, k)).astype(np.float32),
        slopes=rng.normal(0.0, 1.0, size=(draws, k, F)).astype(np.float32),
    )


def snapshot() -> PolicySnapshot:
    points = [posterior("q1", 2, seed=1), posterior("q2", 4, seed=2)]
    return PolicySnapshot(
        flow_id="solar-quote",
        flow_version=3,
        version="solar-quote@3#7",
        created_at=1_767_225_600.25,
        points={p.key: p for p in points},
        guardrails=Guardrails(min_exploration=0.1, holdout=0.05, killed=False),
        diagnostics={"r_hat_max": 1.004, "ess_min": 812.0, "kind": "fit"},
    )


def test_round_trip_keeps_every_field_and_every_draw_bit_for_bit() -> None:
    snap = snapshot()
    back = decode_snapshot(encode_snapshot(snap))
    assert (back.flow_id, back.flow_version, back.version, back.created_at) == (
        "solar-quote",
        3,
        "solar-quote@3#7",
        1_767_225_600.25,
    )
    assert back.guardrails == snap.guardrails
    assert back.diagnostics == snap.diagnostics
    assert back.feature_names == FEATURE_NAMES
    assert list(back.points) == list(snap.points)
    for key, point in snap.points.items():
        got = back.points[key]
        assert got.candidates == point.candidates
        assert got.base.dtype == np.float32 and got.slopes.dtype == np.float32
        assert np.array_equal(got.base, point.base)
        assert np.array_equal(got.slopes, point.slopes)
    assert encode_snapshot(back) == encode_snapshot(snap)


def test_a_snapshot_without_points_round_trips() -> None:
    """A kill switch can be published before any fit."""
    snap = PolicySnapshot("f", 1, "f@1#0", 5.0, {}, Guardrails(killed=True))
    back = decode_snapshot(encode_snapshot(snap))
    assert back.points == {} and back.guardrails.killed


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(encode_snapshot(snapshot()))
    return doc


def _f32(values: list[float]) -> str:
    return base64.b64encode(np.array(values, dtype="<f4").tobytes()).decode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return change


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(name)


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("other type", _set("type", "EdgeChosen"), "not a policy snapshot"),
    ("format v5", _set("v", 5), "v5"),
    ("format v true", _set("v", True), "not supported"),
    ("other features", _set("feature_names", ["device=mobile"]), "other features"),
    ("no features", _drop("feature_names"), "other features"),
    ("no flow id", _drop("flow_id"), "flow_id"),
    ("flow version text", _set("flow_version", "3"), "flow_version"),
    ("flow version flag", _set("flow_version", True), "flow_version"),
    ("no version", _drop("version"), "version"),
    ("created_at text", _set("created_at", "yesterday"), "created_at"),
    ("no created_at", _drop("created_at"), "created_at"),
    ("guardrails list", _set("guardrails", [0.1]), "guardrails"),
    ("killed text", _set("guardrails.killed", "false"), "killed"),
    ("holdout above 1", _set("guardrails.holdout", 1.5), "holdout"),
    ("floor negative", _set("guardrails.min_exploration", -0.1), "min_exploration"),
    ("floor text", _set("guardrails.min_exploration", "0.1"), "min_exploration"),
    ("diagnostics list", _set("diagnostics", []), "diagnostics"),
    ("points object", _set("points", {}), "points"),
    ("point text", lambda d: d["points"].__setitem__(0, "q1"), "point"),
    ("no node id", lambda d: d["points"][0].pop("node_id"), "node_id"),
    ("candidates text", _set("points.0.candidates", "ab"), "candidates"),
    ("candidate number", _set("points.0.candidates", ["a", 2]), "candidates"),
    ("one candidate", _set("points.0.candidates", ["a"]), "fewer than 2"),
    ("no base", lambda d: d["points"][0].pop("base"), "base"),
    ("base not base64", _set("points.0.base.f32", "@@@@"), "base"),
    ("base too short", _set("points.0.base.f32", _f32([1.0, 2.0])), "base"),
    ("base shape text", _set("points.0.base.shape", "ab"), "base"),
    ("slopes other shape", _set("points.0.slopes.shape", [8, 2, F + 1]), "slopes"),
    ("no draws", _set("points.0.base", {"shape": [0, 2], "f32": ""}), "draws"),
    ("duplicate point", lambda d: d["points"].append(d["points"][0]), "twice"),
]


@pytest.mark.parametrize(("change", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_malformed_snapshots_raise_a_clear_snapshot_error(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = _doc()
    change(doc)
    with pytest.raises(SnapshotError, match=message):
        decode_snapshot(orjson.dumps(doc))


@pytest.mark.parametrize(
    "data", [b"", b"not json", b"[1, 2]", b'"PolicySnapshot"', b"null", b"\xff\xfe"]
)
def test_what_is_not_a_snapshot_at_all_is_refused(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        decode_snapshot(data)


def test_non_finite_draws_are_refused_with_the_point_named() -> None:
    doc = _doc()
    k = len(doc["points"][0]["candidates"])
    doc["points"][0]["base"] = {"shape": [1, k], "f32": _f32([np.nan] * k)}
    doc["points"][0]["slopes"] = {"shape": [1, k, F], "f32": _f32([0.0] * (k * F))}
    with pytest.raises(SnapshotError, match="q1/b: non-finite"):
        decode_snapshot(orjson.dumps(doc))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_exploration": 1.5}, "min_exploration"),
        ({"min_exploration": float("nan")}, "min_exploration"),
        ({"holdout": -0.01}, "holdout"),
    ],
)
def test_guardrails_out_of_range_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        Guardrails(**kwargs)


def test_point_posteriors_check_their_shapes() -> None:
    good = posterior()
    with pytest.raises(SnapshotError, match="base"):
        PointPosterior("q", "b", ("a", "b"), good.base, good.slopes)  # k = 3 draws
    with pytest.raises(SnapshotError, match="slopes"):
        PointPosterior("q", "b", good.candidates, good.base, good.slopes[:, :, :-1])
    with pytest.raises(SnapshotError, match="no posterior draws"):
        PointPosterior("q", "b", good.candidates, good.base[:0], good.slopes[:0])
