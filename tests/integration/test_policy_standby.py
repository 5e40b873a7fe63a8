"""A standby policy service (issue 16, item 6): it learns but never fits nor publishes,
adopts the leader's snapshots, and after a takeover publishes the next update of the
leader's fit, numbered after the leader's last one, without refitting at once."""

from __future__ import annotations

from policy.control_feed import guardrails_applier
from policy.snapshot import Guardrails, PolicySnapshot
from tests.integration.test_policy_fitting import Harness
from tests.integration.test_policy_fitting_online import ONLINE, feed


async def test_a_standby_learns_but_never_fits_nor_publishes() -> None:
    h = Harness(schedule=ONLINE)
    h.scheduler.leading = False
    assert h.scheduler.role == "standby"
    await feed(h, 60)
    await h.tick()
    await h.tick(700.0)
    assert h.fit.requests == [] and h.published == []
    learner = h.scheduler.flows["quiz"].learner
    assert learner is not None and learner.outcomes > 0  # warm
    assert await h.scheduler.set_guardrails("quiz", Guardrails(holdout=0.3)) is None
    assert h.scheduler.guardrails("quiz").holdout == 0.3  # taken, for when it leads


async def test_after_a_takeover_the_next_update_follows_the_leader_s_last_one() -> None:
    leader, standby = Harness(schedule=ONLINE), Harness(schedule=ONLINE)
    standby.scheduler.leading = False
    for h in (leader, standby):
        await feed(h, 60)
        await h.tick()
    [fit] = leader.published
    standby.scheduler.adopt(fit)
    for h in (leader, standby):
        await feed(h, 60, start=60)
        await h.tick(31.0)
    update = leader.published[-1]
    assert update.version == f"{fit.version}.1"
    standby.scheduler.adopt(update)
    state = standby.scheduler.flows["quiz"]
    assert state.learner is not None and state.learner.anchor == fit.version  # re-seeded

    # the leader dies; the standby takes over
    standby.scheduler.leading = True
    await feed(standby, 30, start=120)
    await standby.tick(31.0)
    assert standby.fit.requests == []  # the leader's fit is recent: no refit at once
    [next_update] = standby.published
    assert next_update.version == f"{fit.version}.2"
    assert next_update.diagnostics["fit_version"] == fit.version
    await standby.tick(600.0)
    assert len(standby.fit.requests) == 1  # refits on the leader's schedule


async def test_a_leading_schedule_ignores_its_own_publications() -> None:
    h = Harness(schedule=ONLINE)
    await feed(h, 60)
    await h.tick()
    [fit] = h.published
    learner = h.scheduler.flows["quiz"].learner
    h.scheduler.adopt(fit)
    assert h.scheduler.flows["quiz"].learner is learner


async def test_a_standby_applies_guardrail_changes_without_publishing() -> None:
    published: list[PolicySnapshot] = []
    h = Harness(schedule=ONLINE)
    await feed(h, 60)
    await h.tick()
    [fit] = h.published
    h.scheduler.leading = False

    async def publish(snapshot: PolicySnapshot) -> None:
        published.append(snapshot)

    apply = guardrails_applier(
        h.scheduler.set_guardrails, lambda _: fit, publish, leading=lambda: h.scheduler.leading
    )
    assert await apply("quiz", Guardrails(killed=True), None) is None
    assert published == [] and h.scheduler.guardrails("quiz").killed
    h.scheduler.leading = True
    derived = await apply("quiz", Guardrails(killed=True), None)
    assert derived is not None and derived.guardrails.killed
