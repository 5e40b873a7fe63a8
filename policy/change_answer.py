"""What the policy API answers to a guardrail change (pure: no I/O, no clock).

A change is accepted once it is durable (recorded in the control log). The
API then waits, bounded by ``LEADFLOW_POLICY_CHANGE_WAIT_SECONDS``, for a
snapshot that carries it, and answers:

* **200** with that snapshot's ``policy_version`` (``"pending": false``);
* **202** with ``"policy_version": null`` and ``"pending": true`` when no
  snapshot carries it yet (the flow has no snapshot yet, the leader has not
  republished it within the bound, ...). The change stays recorded and applies
  to the flow's next snapshot; ``GET /flows/{flow_id}/guardrails`` shows when
  it did (its ``policy_version`` and ``pending``).

A snapshot *carries* the change when its own application published it, or when
the installed snapshot has the flow's guardrails as they are now (every change
recorded so far, this one included). Never a 200 without a version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.snapshot import Guardrails, PolicySnapshot

CHANGE_WAIT_ENV = "LEADFLOW_POLICY_CHANGE_WAIT_SECONDS"
DEFAULT_CHANGE_WAIT_SECONDS = 5.0
MAX_CHANGE_WAIT_SECONDS = 60.0


def change_wait_seconds(env: Mapping[str, str]) -> float:
    """The bound on the wait for the snapshot carrying a change (0 to 60 s, default 5)."""
    raw = env.get(CHANGE_WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_CHANGE_WAIT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{CHANGE_WAIT_ENV} must be a number, got {raw!r}") from None
    if not 0.0 <= value <= MAX_CHANGE_WAIT_SECONDS:
        raise ValueError(f"{CHANGE_WAIT_ENV} must be within 0 and {MAX_CHANGE_WAIT_SECONDS:g}")
    return value


def carrier(
    rails: Guardrails, published: PolicySnapshot | None, installed: PolicySnapshot | None
) -> PolicySnapshot | None:
    """The snapshot that carries a change: the one its application ``published``,
    else the ``installed`` one when it has the flow's guardrails now (``rails``)."""
    if published is not None:
        return published
    if installed is not None and installed.guardrails == rails:
        return installed
    return None


def change_answer(
    flow_id: str, rails: Guardrails, snapshot: PolicySnapshot | None, position: int | None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for a recorded change: 200 with the carrying snapshot's
    version, or 202 pending (``position``: the change's place in the control log,
    None without a log)."""
    body: dict[str, Any] = {
        "flow_id": flow_id,
        "guardrails": rails.to_dict(),
        "policy_version": snapshot.version if snapshot is not None else None,
        "pending": snapshot is None,
    }
    if position is not None:
        body["position"] = position
    return (200 if snapshot is not None else 202), body


def guardrails_status(rails: Guardrails, installed: PolicySnapshot | None) -> dict[str, Any]:
    """For ``GET .../guardrails``: the installed snapshot's version and whether the
    guardrails in force are still waiting for a snapshot that carries them."""
    return {
        "policy_version": installed.version if installed is not None else None,
        "pending": carrier(rails, None, installed) is None,
    }
