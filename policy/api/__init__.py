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

When an admin key is configured (``LEADFLOW_ADMIN_API_KEY_SHA256``) every
endpoint wants ``Authorization: Bearer <key>``. Errors are JSON:
``{"error": {"code": ..., "message": ...}}``.

This module is the route table (:func:`create_policy_api`); the parts:

* :mod:`policy.api.context`: what every handler reads from its application;
* :mod:`policy.api.protocol`: JSON answers, :class:`~policy.api.protocol.ApiError`
  and the middleware that checks the admin key and answers errors;
* :mod:`policy.api.reads`: the flows, the summary (its numbers: :mod:`policy.api.summary`)
  and the recommendation;
* :mod:`policy.api.decide`: ``POST /decide`` and the parsing of its body;
* :mod:`policy.api.guardrails`: the guardrails and promotions, each change recorded
  and answered by :mod:`policy.api.changes` (the control log, 200 or 202 pending).
"""

from __future__ import annotations

from aiohttp import web

from policy.api.context import POLICY_API, PUBLIC, PolicyApiContext
from policy.api.decide import decide
from policy.api.guardrails import get_guardrails, promote, put_guardrails
from policy.api.protocol import auth_and_errors
from policy.api.reads import flows, recommendation, summary


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
