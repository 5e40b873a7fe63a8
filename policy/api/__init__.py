"""The policy service's HTTP API (an aiohttp sub-application).

* ``GET /flows``: each flow's installed snapshot version and the fitting schedule's state;
* ``GET /flows/{flow_id}/summary``: per decision point, each candidate edge's
  conversion estimate (posterior mean) with its 90% credible interval, the share
  of traffic the policy now sends it, and the outcomes counted for it;
* ``POST /decide``: a decision for an external caller (a JSON body shaped like a
  decision point), with its propensity, policy version and seed;
* ``GET`` / ``PUT /flows/{flow_id}/guardrails``: the flow's guardrails, their
  history and whether a snapshot carries them yet; a change republishes its
  snapshot under a new version (the answer: :mod:`policy.change_answer`);
* ``POST /flows/{flow_id}/promote``: promote an edge at a decision point (or end
  a promotion), a guardrail change like the others;
* ``GET /flows/{flow_id}/recommendation``: per decision point, each edge's
  probability of being best and expected loss, the stopping rule's verdict and
  the lift over the holdout (:mod:`policy.optimisation`).

With a control log (:class:`~policy.control_feed.ControlFeed`) every change is
appended there first (who, when, what) and applied once read back, so it
survives restarts; without one (tests) it is applied in memory. A change
answers 200 with the version of the snapshot that carries it, or 202 pending
when none does within ``change_wait_seconds``.

Estimates and shares are averaged over the visitor contexts the flow's outcomes
were counted in (its traffic mix), or taken at the baseline context when nothing
was counted. When an admin key is configured (``LEADFLOW_ADMIN_API_KEY_SHA256``)
every endpoint wants ``Authorization: Bearer <key>``. Errors are JSON:
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from policy.api.context import POLICY_API, PUBLIC, PolicyApiContext
from policy.api.decide import decide
from policy.api.protocol import ApiError, auth_and_errors, json_response, text_field
from policy.api.summary import flow_summary
from policy.change_answer import carrier, change_answer, guardrails_status
from policy.control import GuardrailChange, PromotionChange
from policy.holdout_ledger import HoldoutLedger
from policy.optimisation import (
    DEFAULT_MAX_LOSS,
    DEFAULT_P_BEST,
    StoppingRule,
    recommend_flow,
)
from policy.rewards import FlowCounts, FlowKey
from policy.snapshot import Guardrails, PolicySnapshot, SnapshotError

log = logging.getLogger("leadflow.policy.api")


# ---- handlers ---------------------------------------------------------------------------------


def _counts(context: PolicyApiContext, snapshot: PolicySnapshot) -> FlowCounts | None:
    if context.ledger is None:
        return None
    return context.ledger.flows.get(FlowKey(snapshot.flow_id, snapshot.flow_version))


async def flows(request: web.Request) -> web.Response:
    context = request.app[POLICY_API]
    installed = {
        s.flow_id: {"flow_version": s.flow_version, "policy_version": s.version}
        for s in context.policy.installed()
    }
    schedule = context.scheduler.status() if context.scheduler is not None else {}
    ids = sorted(
        set(installed) | set(schedule) | set(context.catalog.ids() if context.catalog else [])
    )
    return json_response(
        {
            "flows": [
                {"flow_id": i, "snapshot": installed.get(i), "schedule": schedule.get(i)}
                for i in ids
            ]
        }
    )


async def summary(request: web.Request) -> web.Response:
    context = request.app[POLICY_API]
    flow_id = request.match_info["flow_id"]
    snapshot = context.policy.snapshots.get(flow_id)
    if snapshot is None:
        raise ApiError(404, "no_snapshot", "this flow has no policy snapshot yet")
    body = flow_summary(snapshot, _counts(context, snapshot))
    if context.scheduler is not None:
        body["schedule"] = context.scheduler.status().get(flow_id)
        body["role"] = context.scheduler.role  # leader, or standby (distributed, 2 instances)
    return json_response(body)


def _history(context: PolicyApiContext, flow_id: str) -> list[dict[str, Any]]:
    return context.control.state.audit(flow_id) if context.control is not None else []


async def get_guardrails(request: web.Request) -> web.Response:
    context = request.app[POLICY_API]
    flow_id = request.match_info["flow_id"]
    if context.scheduler is None:
        snapshot = context.policy.snapshots.get(flow_id)
        if snapshot is None:
            raise ApiError(404, "no_snapshot", "this flow has no policy snapshot yet")
        rails = snapshot.guardrails
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


def _validated(context: PolicyApiContext, change: GuardrailChange) -> Guardrails:
    """The flow's guardrails with ``change`` applied (400 if they are not valid)."""
    assert context.scheduler is not None
    try:
        return change.apply(context.scheduler.guardrails(change.flow_id))
    except SnapshotError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


def _left(deadline: float) -> float:
    return max(0.0, deadline - asyncio.get_running_loop().time())


async def _recorded(
    context: PolicyApiContext, change: GuardrailChange, rails: Guardrails, deadline: float
) -> tuple[int | None, bool, PolicySnapshot | None]:
    """Record ``change`` (durable once appended to the control log), then wait
    until ``deadline`` for it to apply: (its position, None without a log;
    whether it applied; the snapshot its application published, if any)."""
    assert context.scheduler is not None
    if context.control is None:
        snapshot = await context.scheduler.set_guardrails(change.flow_id, rails)
        log.info(
            "policy guardrails changed",
            extra={"flow_id": change.flow_id, "by": change.by, "change": change.what()},
        )
        return None, True, snapshot
    if not context.control.loaded.is_set():
        raise ApiError(503, "not_ready", "the recorded guardrail changes are not loaded yet")
    offset = await context.control.append(change)
    try:
        published = await asyncio.wait_for(context.control.applied(offset), _left(deadline))
    except TimeoutError:
        return offset, False, None
    return offset, True, published


async def _carried(
    context: PolicyApiContext, flow_id: str, published: PolicySnapshot | None, deadline: float
) -> PolicySnapshot | None:
    """The snapshot carrying an applied change, waiting until ``deadline`` for one
    to be installed (a standby's leader publishes it, a restart republishes it)."""
    assert context.scheduler is not None
    while True:
        installed = context.policy.snapshots.get(flow_id)
        found = carrier(context.scheduler.guardrails(flow_id), published, installed)
        if found is not None or _left(deadline) <= 0.0:
            return found
        await asyncio.sleep(min(0.05, _left(deadline)))


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
    return await _applied(context, change)


async def _applied(context: PolicyApiContext, change: GuardrailChange) -> web.Response:
    """Record ``change`` and answer with the snapshot that carries it: 200 with its
    version, or 202 pending when none does within the bound (:mod:`policy.change_answer`)."""
    assert context.scheduler is not None
    deadline = asyncio.get_running_loop().time() + context.change_wait_seconds
    rails = _validated(context, change)
    position, applied, published = await _recorded(context, change, rails, deadline)
    snapshot = await _carried(context, change.flow_id, published, deadline) if applied else None
    if applied:
        rails = context.scheduler.guardrails(change.flow_id)
    status, body = change_answer(change.flow_id, rails, snapshot, position)
    return json_response(body, status)


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
    return await _applied(context, change)


def _query_number(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a number") from None


async def recommendation(request: web.Request) -> web.Response:
    """The stopping rule's verdict per decision point (``?p_best=&max_loss=``)."""
    context = request.app[POLICY_API]
    flow_id = request.match_info["flow_id"]
    snapshot = context.policy.snapshots.get(flow_id)
    if snapshot is None:
        raise ApiError(404, "no_snapshot", "this flow has no policy snapshot yet")
    try:
        rule = StoppingRule(
            _query_number(request, "p_best", DEFAULT_P_BEST),
            _query_number(request, "max_loss", DEFAULT_MAX_LOSS),
        )
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    flow = FlowKey(snapshot.flow_id, snapshot.flow_version)
    held = rest = None
    if isinstance(context.ledger, HoldoutLedger):
        held, rest = context.ledger.split(flow)
    result = recommend_flow(snapshot, _counts(context, snapshot), rule, held, rest)
    return json_response(result.to_dict())


def create_policy_api(context: PolicyApiContext, public: tuple[str, ...] = ()) -> web.Application:
    """The API as an application (``public``: paths that need no key, e.g. /healthz)."""
    app = web.Application(middlewares=[auth_and_errors])
    app[POLICY_API] = context
    app[PUBLIC] = frozenset(public)
    app.router.add_get("/flows", flows)
    app.router.add_get("/flows/{flow_id}/summary", summary)
    app.router.add_get("/flows/{flow_id}/guardrails", get_guardrails)
    app.router.add_put("/flows/{flow_id}/guardrails", put_guardrails)
    app.router.add_post("/flows/{flow_id}/promote", promote)
    app.router.add_get("/flows/{flow_id}/recommendation", recommendation)
    app.router.add_post("/decide", decide)
    return app
