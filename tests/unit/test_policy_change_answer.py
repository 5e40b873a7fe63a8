"""What the policy API answers to a guardrail change (policy.change_answer): 200 with
the version of the snapshot that carries it, or 202 pending; never 200 without one."""

from __future__ import annotations

import pytest

from policy.change_answer import (
    CHANGE_WAIT_ENV,
    DEFAULT_CHANGE_WAIT_SECONDS,
    carrier,
    change_answer,
    change_wait_seconds,
    guardrails_status,
)
from policy.snapshot import Guardrails, PolicySnapshot

BEFORE = Guardrails(holdout=0.0, killed=True)
AFTER = Guardrails(holdout=0.3, killed=True)


def snapshot(version: str, rails: Guardrails) -> PolicySnapshot:
    return PolicySnapshot("quiz", 1, version, 1.0, {}, guardrails=rails)


def test_the_snapshot_the_change_published_carries_it() -> None:
    published = snapshot("quiz@1#1.2", AFTER)
    assert carrier(AFTER, published, snapshot("quiz@1#1.1", BEFORE)) is published


def test_an_installed_snapshot_carries_the_change_only_with_the_guardrails_now() -> None:
    assert carrier(AFTER, None, snapshot("quiz@1#1.1", BEFORE)) is None
    installed = snapshot("quiz@1#1.2", AFTER)
    assert carrier(AFTER, None, installed) is installed
    assert carrier(AFTER, None, None) is None


def test_a_carried_change_answers_200_with_the_version() -> None:
    status, body = change_answer("quiz", AFTER, snapshot("quiz@1#1.2", AFTER), 7)
    assert status == 200
    assert body == {
        "flow_id": "quiz",
        "guardrails": AFTER.to_dict(),
        "policy_version": "quiz@1#1.2",
        "pending": False,
        "position": 7,
    }


def test_a_change_no_snapshot_carries_yet_answers_202_pending() -> None:
    status, body = change_answer("quiz", AFTER, None, 7)
    assert status == 202
    assert body["policy_version"] is None and body["pending"] is True
    assert body["position"] == 7


def test_without_a_control_log_there_is_no_position() -> None:
    _, body = change_answer("quiz", AFTER, snapshot("quiz@1#1.2", AFTER), None)
    assert "position" not in body


def test_the_guardrails_status_says_whether_a_snapshot_carries_them() -> None:
    assert guardrails_status(AFTER, None) == {"policy_version": None, "pending": True}
    old = snapshot("quiz@1#1.1", BEFORE)
    assert guardrails_status(AFTER, old) == {"policy_version": "quiz@1#1.1", "pending": True}
    new = snapshot("quiz@1#1.2", AFTER)
    assert guardrails_status(AFTER, new) == {"policy_version": "quiz@1#1.2", "pending": False}


def test_the_wait_bound_defaults_to_a_few_seconds_and_is_checked() -> None:
    assert change_wait_seconds({}) == DEFAULT_CHANGE_WAIT_SECONDS == 5.0
    assert change_wait_seconds({CHANGE_WAIT_ENV: " 0.5 "}) == 0.5
    assert change_wait_seconds({CHANGE_WAIT_ENV: "0"}) == 0.0
    for bad in ("-1", "61", "soon"):
        with pytest.raises(ValueError, match=CHANGE_WAIT_ENV):
            change_wait_seconds({CHANGE_WAIT_ENV: bad})
