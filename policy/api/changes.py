"""Recording a guardrail change and answering with the snapshot that carries it.

With a control log (:class:`~policy.control_feed.ControlFeed`) every change is
appended there first (who, when, what) and applied once read back, so it
survives restarts; without one (tests) it is applied in memory. A change
answers 200 with the version of the snapshot that carries it, or 202 pending
when none does within ``change_wait_seconds`` (:mod:`policy.change_answer`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from policy.api.context import PolicyApiContext
from policy.api.protocol import ApiError, json_response
from policy.change_answer import carrier, change_answer
from policy.control import GuardrailChange
from policy.snapshot import Guardrails, PolicySnapshot, SnapshotError

log = logging.getLogger("leadflow.policy.api")


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


async def record_change(context: PolicyApiContext, change: GuardrailChange) -> web.Response:
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
