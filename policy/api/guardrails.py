"""The guardrail handlers: ``GET`` / ``PUT /flows/{flow_id}/guardrails`` and
``POST /flows/{flow_id}/promote``.

``GET`` answers the flow's guardrails, their history and whether a snapshot
carries them yet. ``PUT`` changes the exploration floor, the holdout or the kill
switch; a promotion sends all traffic at a decision point to one edge (or ends
that). Both validate the body here and leave recording the change and the answer
to :func:`policy.api.changes.record_change`. Changes are made on the policy
service only (405 where there is no fitting schedule).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from policy.api.changes import record_change
from policy.api.context import POLICY_API, PolicyApiContext
from policy.api.protocol import ApiError, installed_snapshot, json_response, text_field
from policy.change_answer import guardrails_status
from policy.control import GuardrailChange, PromotionChange


def _history(context: PolicyApiContext, flow_id: str) -> list[dict[str, Any]]:
    return context.control.state.audit(flow_id) if context.control is not None else []


async def get_guardrails(request: web.Request) -> web.Response:
    context = request.app[POLICY_API]
    flow_id = request.match_info["flow_id"]
    if context.scheduler is None:
        rails = installed_snapshot(context, flow_id).guardrails
    else:
        rails = context.scheduler.guardrails(flow_id)
    return json_response(
        {
            "flow_id": flow_id,
            "guardrails": rails.to_dict(),
            **guardrails_status(rails, context.policy.snapshots.get(flow_id)),
            "history": _history(context, flow_id),
        }
    )


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return body


def _who(body: dict[str, Any]) -> tuple[str, str]:
    """(by, reason) of a change: optional strings of the body."""
    by = body.pop("by", "api")
    reason = body.pop("reason", "")
    if not isinstance(by, str) or not by or not isinstance(reason, str):
        raise ApiError(400, "bad_request", "by and reason must be strings")
    return by[:200], reason[:1000]


def _writable(context: PolicyApiContext, flow_id: str) -> None:
    if context.scheduler is None:
        raise ApiError(405, "read_only", "guardrails are changed on the policy service")
    if context.catalog is not None and context.catalog.latest(flow_id) is None:
        raise ApiError(404, "unknown_flow", "no such flow")


async def put_guardrails(request: web.Request) -> web.Response:
    context = request.app[POLICY_API]
    flow_id = request.match_info["flow_id"]
    _writable(context, flow_id)
    body = await _body(request)
    by, reason = _who(body)
    if set(body) - {"min_exploration", "holdout", "killed"}:
        raise ApiError(400, "bad_request", "give min_exploration, holdout and/or killed")
    if not isinstance(body.get("killed", False), bool):
        raise ApiError(400, "bad_request", "killed must be true or false")
    for name in ("min_exploration", "holdout"):
        value = body.get(name, 0.0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ApiError(400, "bad_request", f"{name} must be a number")
    change = GuardrailChange(
        flow_id=flow_id,
        at=time.time(),
        by=by,
        min_exploration=float(body["min_exploration"]) if "min_exploration" in body else None,
        holdout=float(body["holdout"]) if "holdout" in body else None,
        killed=body.get("killed"),
        reason=reason,
    )
    return await record_change(context, change)


def _point_candidates(
    context: PolicyApiContext, flow_id: str, point: tuple[str, str]
) -> tuple[str, ...] | None:
    """The point's candidates in the flow's newest version (or the installed snapshot)."""
    if context.catalog is not None:
        flow = context.catalog.latest(flow_id)
        if flow is not None and point[0] in flow.nodes:
            button = flow.nodes[point[0]].button(point[1])
            if button is not None and len(button.next) > 1:
                return tuple(button.next)
    snapshot = context.policy.snapshots.get(flow_id)
    posterior = snapshot.points.get(point) if snapshot is not None else None
    return posterior.candidates if posterior is not None else None


async def promote(request: web.Request) -> web.Response:
    """``{"node_id", "button_id", "edge"}`` (``edge`` null: end the promotion)."""
    context = request.app[POLICY_API]
    flow_id = request.match_info["flow_id"]
    _writable(context, flow_id)
    body = await _body(request)
    by, reason = _who(body)
    if set(body) - {"node_id", "button_id", "edge"}:
        raise ApiError(400, "bad_request", "give node_id, button_id and edge")
    node_id, button_id = text_field(body, "node_id"), text_field(body, "button_id")
    edge = body.get("edge")
    if edge is not None and (not isinstance(edge, str) or not edge):
        raise ApiError(400, "bad_request", "edge must be a non-empty string or null")
    candidates = _point_candidates(context, flow_id, (node_id, button_id))
    if candidates is None:
        raise ApiError(404, "unknown_point", f"no decision point {node_id}/{button_id}")
    if edge is not None and edge not in candidates:
        raise ApiError(400, "bad_request", f"edge must be one of {list(candidates)}")
    change = GuardrailChange(
        flow_id=flow_id,
        at=time.time(),
        by=by,
        promotions=(PromotionChange(node_id, button_id, edge),),
        reason=reason,
    )
    return await record_change(context, change)
