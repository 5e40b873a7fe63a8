"""``POST /decide``: a decision for an external caller.

The JSON body is shaped like a decision point (:func:`parse_point` validates it
and fills in what it leaves out from the installed snapshot or the flow catalog);
the answer is the policy's choice with its propensity, policy version, seed,
features and every candidate's probability.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from policy.api.context import POLICY_API, PolicyApiContext
from policy.api.protocol import ApiError, json_response, text_field
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

DEVICES = ("desktop", "mobile", "tablet", "unknown")


def _integer(body: Mapping[str, Any], name: str, default: int | None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, "bad_request", f"{name} must be an integer")
    return value


def _context(raw: Any) -> VisitorContext:
    if raw is None:
        return VisitorContext()
    if not isinstance(raw, dict):
        raise ApiError(400, "bad_request", "context must be an object")
    names = {f.name for f in dataclasses.fields(VisitorContext)}
    unknown = set(raw) - names
    if unknown:
        raise ApiError(400, "bad_request", f"unknown context fields: {sorted(unknown)}")
    if not all(isinstance(v, str) for v in raw.values()):
        raise ApiError(400, "bad_request", "context values must be strings")
    if raw.get("device", "unknown") not in DEVICES:
        raise ApiError(400, "bad_request", f"device must be one of {list(DEVICES)}")
    return VisitorContext(**raw)


def parse_point(body: Any, context: PolicyApiContext) -> DecisionPoint:
    """A DecisionPoint from a JSON body; flow version and candidates default to the
    installed snapshot's (or the catalog's latest flow version)."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    flow_id = text_field(body, "flow_id")
    node_id = text_field(body, "node_id")
    button_id = text_field(body, "button_id")
    conversation_id = text_field(body, "conversation_id")
    snapshot = context.policy.snapshots.get(flow_id)
    latest = context.catalog.latest(flow_id) if context.catalog is not None else None
    default_version = snapshot.flow_version if snapshot else latest.version if latest else None
    raw_version = _integer(body, "flow_version", default_version)
    candidates: Any = body.get("candidates")
    if candidates is None:
        known = None
        if snapshot is not None and snapshot.flow_version == raw_version:
            point = snapshot.points.get((node_id, button_id))
            known = point.candidates if point else None
        if known is None and context.catalog is not None:
            flow = context.catalog.get(flow_id, raw_version)
            button = (
                flow.nodes[node_id].button(button_id) if flow and node_id in flow.nodes else None
            )
            known = button.next if button is not None else None
        if known is None:
            raise ApiError(404, "unknown_point", "no such decision point: give its candidates")
        candidates = list(known)
    if (
        not isinstance(candidates, list)
        or len(candidates) < 2
        or not all(isinstance(c, str) for c in candidates)
        or len(set(candidates)) != len(candidates)
    ):
        raise ApiError(400, "bad_request", "candidates must be 2 or more distinct strings")
    answers = body.get("answers", [])
    if not isinstance(answers, list) or not all(
        isinstance(a, list) and len(a) == 2 and all(isinstance(s, str) for s in a) for a in answers
    ):
        raise ApiError(400, "bad_request", "answers must be a list of [node_id, button_id]")
    at = body.get("at", time.time())
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise ApiError(400, "bad_request", "at must be a number (seconds since the epoch)")
    return DecisionPoint(
        conversation_id=conversation_id,
        command_seq=_integer(body, "command_seq", 0),
        flow_id=flow_id,
        flow_version=raw_version,
        node_id=node_id,
        button_id=button_id,
        candidates=tuple(candidates),
        context=_context(body.get("context")),
        answers=tuple((a[0], a[1]) for a in answers),
        at=float(at),
    )


async def decide(request: web.Request) -> web.Response:
    context = request.app[POLICY_API]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_request", "the body is not JSON") from None
    point = parse_point(body, context)
    choice = context.policy.choose(point)
    dist = context.policy.distribution(point)
    probabilities = (
        dist.probabilities()
        if dist is not None
        else [1.0 / len(point.candidates)] * len(point.candidates)
    )
    return json_response(
        {
            "chosen": choice.chosen,
            "propensity": choice.propensity,
            "policy_version": choice.policy_version,
            "seed": choice.seed,
            "features": list(choice.features),
            "probabilities": dict(zip(point.candidates, probabilities, strict=True)),
        }
    )
