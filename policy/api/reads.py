"""The read handlers: ``GET /flows``, ``GET /flows/{flow_id}/summary`` and
``GET /flows/{flow_id}/recommendation``.

The flows list each flow's installed snapshot version and the fitting schedule's
state; the summary is :func:`policy.api.summary.flow_summary` over the outcomes
counted for the snapshot's flow version; the recommendation is the stopping
rule's verdict per decision point with the lift over the holdout
(:mod:`policy.optimisation`).
"""

from __future__ import annotations

from aiohttp import web

from policy.api.context import POLICY_API, PolicyApiContext
from policy.api.protocol import ApiError, installed_snapshot, json_response
from policy.api.summary import flow_summary
from policy.holdout_ledger import HoldoutLedger
from policy.optimisation import DEFAULT_MAX_LOSS, DEFAULT_P_BEST, StoppingRule, recommend_flow
from policy.reward_counts import FlowCounts, FlowKey
from policy.snapshot import PolicySnapshot


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
    snapshot = installed_snapshot(context, flow_id)
    body = flow_summary(snapshot, _counts(context, snapshot))
    if context.scheduler is not None:
        body["schedule"] = context.scheduler.status().get(flow_id)
        body["role"] = context.scheduler.role  # leader, or standby (distributed, 2 instances)
    return json_response(body)


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
    snapshot = installed_snapshot(context, flow_id)
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
