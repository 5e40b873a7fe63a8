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

import logging

from aiohttp import web

from policy.api.context import POLICY_API, PUBLIC, PolicyApiContext
from policy.api.decide import decide
from policy.api.guardrails import get_guardrails, promote, put_guardrails
from policy.api.protocol import ApiError, auth_and_errors, json_response
from policy.api.summary import flow_summary
from policy.holdout_ledger import HoldoutLedger
from policy.optimisation import (
    DEFAULT_MAX_LOSS,
    DEFAULT_P_BEST,
    StoppingRule,
    recommend_flow,
)
from policy.rewards import FlowCounts, FlowKey
from policy.snapshot import PolicySnapshot

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
