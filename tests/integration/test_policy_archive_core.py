"""The snapshot archive's compact form (issue 16, item 6): an online update is archived
as its Gaussian posterior and regenerated to the exact bytes it was published with."""

from __future__ import annotations

import dataclasses
import random

import orjson
import pytest

from app.cli_policy_archive import ArchiveUsageError, is_fit, parse_age
from app.verify.policies import ReplayPolicies, Unavailable
from policy.archive import archive_body, expand, is_compact
from policy.fit_versions import split_version
from policy.online import OnlineLearner
from policy.online_config import Outcome
from policy.snapshot import Guardrails, PolicySnapshot, SnapshotError, encode_snapshot
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

POINTS = {("size", "big"): ("colour", "extra", "note"), ("when", "soon"): ("call", "mail")}
FIT = "quiz@1#20251126T000000.000Z"


def update(revision: int = 1, outcomes: int = 400) -> PolicySnapshot:
    """An online update whose posterior learnt cells and earlier answers."""
    rng = random.Random(revision)
    learner = OnlineLearner("quiz", 1, POINTS)
    batch = []
    for i in range(outcomes):
        node, button = rng.choice(list(POINTS))
        answers = (("intro", rng.choice(["yes", "no"])), ("age", rng.choice(["a", "b"])))
        edge = rng.choice(POINTS[(node, button)])
        batch.append(
            Outcome(f"c{i}", node, button, edge, rng.randrange(6), answers, rng.random() < 0.2)
        )
    learner.observe(batch)
    return learner.snapshot(
        f"{FIT}.{revision}", 1_764_115_200.0 + revision, Guardrails(holdout=0.1)
    )


def test_an_update_is_archived_compactly_and_regenerated_to_its_exact_bytes() -> None:
    snapshot = update()
    full = encode_snapshot(snapshot)
    body = archive_body(snapshot)
    assert is_compact(body)
    assert len(body) * 5 < len(full)  # the draws are ~10x the posterior's moments
    assert expand(body) == full
    assert expand(full) == full  # a full body is its own snapshot


def test_a_guardrail_republication_of_an_update_is_compact_too() -> None:
    """Same draws (the source's seed), another version, created_at and guardrails."""
    snapshot = update()
    derived = dataclasses.replace(
        snapshot,
        version=f"{snapshot.version}~g1",
        created_at=snapshot.created_at + 5,
        guardrails=Guardrails(min_exploration=0.2, killed=True),
    )
    body = archive_body(derived)
    assert is_compact(body) and expand(body) == encode_snapshot(derived)


def test_a_fit_has_no_source_and_is_archived_whole() -> None:
    snapshot = dataclasses.replace(update(), source=None)
    assert archive_body(snapshot) == encode_snapshot(snapshot)


def test_a_compact_form_that_would_not_regenerate_is_not_written() -> None:
    """A source that does not match the draws (here: another seed) never reaches the
    archive as such: the full snapshot is archived instead."""
    snapshot = update()
    assert snapshot.source is not None
    wrong = dataclasses.replace(snapshot, source=dataclasses.replace(snapshot.source, seed=7))
    assert archive_body(wrong) == encode_snapshot(wrong)


def test_a_tampered_compact_body_is_refused_not_replayed_with_other_draws() -> None:
    snapshot = update()
    body = orjson.loads(archive_body(snapshot))
    body["seed"] += 1
    tampered = orjson.dumps(body)
    with pytest.raises(SnapshotError, match="does not regenerate"):
        expand(tampered)
    policies = ReplayPolicies(lambda version: tampered)
    with pytest.raises(Unavailable, match="cannot be used"):
        policies.policy(snapshot.version)


def test_a_replay_decides_with_the_regenerated_snapshot_as_the_live_policy_did() -> None:
    from policy.thompson import ThompsonPolicy

    snapshot = update()
    live = ThompsonPolicy()
    assert live.install(snapshot)
    replay = ReplayPolicies(lambda version: archive_body(snapshot)).policy(snapshot.version)
    for i in range(50):
        point = DecisionPoint(
            conversation_id=f"c{i}",
            command_seq=3,
            flow_id="quiz",
            flow_version=1,
            node_id="size",
            button_id="big",
            candidates=POINTS[("size", "big")],
            context=VisitorContext(device="mobile" if i % 3 else "desktop"),
            answers=(("intro", "yes"),) if i % 2 else (("age", "b"),),
            at=1_764_115_300.0 + i,
        )
        a, b = live.choose(point), replay.choose(point)
        assert (a.chosen, a.propensity, a.seed, a.policy_version) == (
            b.chosen,
            b.propensity,
            b.seed,
            b.policy_version,
        )


def test_fits_and_updates_are_told_apart_by_their_versions() -> None:
    assert split_version(FIT) == (FIT, None)
    assert split_version(f"{FIT}.12") == (FIT, 12)
    assert split_version(f"{FIT}.online.2") == (f"{FIT}.online", 2)
    assert split_version(f"{FIT}~g170.1")[1] is None
    assert is_fit(FIT)
    assert not is_fit(f"{FIT}.3") and not is_fit(f"{FIT}.online.1") and not is_fit(f"{FIT}~g1.1")


def test_ages_for_the_retention() -> None:
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age("45") == 45
    with pytest.raises(ArchiveUsageError):
        parse_age("a week")
