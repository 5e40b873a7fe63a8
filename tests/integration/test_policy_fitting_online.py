"""The fit schedule with the online learner between fits (issue 16, items 2 and 3):
counted decisions reach the learner with their answers, its posterior is published
between fits and re-seeded by each fit, and a refused fit with a few divergences
publishes the online posterior instead of leaving the flow uniform."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

from policy.fit_request import FitReport, FitRequest
from policy.rewards import RewardLedger
from policy.settings import Schedule
from schemas.commands import VisitorContext
from schemas.events import ButtonPressed, ConversationStarted, EdgeChosen, Event, LeadCaptured
from tests.integration.test_policy_fitting import CANDIDATES, POINT, Harness

ONLINE = Schedule(
    refit_seconds=600.0,
    refit_outcomes=0,
    min_outcomes=10,
    update_seconds=30.0,
    tick_seconds=1,
    online=True,
    half_life=200.0,
)
T0 = 1_764_115_200.0


def visit(cid: str, answer: str, edge: str, lead: bool, at: float) -> list[Event]:
    """A visitor answers ``extra`` (the quiz's earlier question), then the decision."""
    head: dict[str, Any] = {"conversation_id": cid, "command_seq": 1, "at": at}
    events: list[Event] = [
        ConversationStarted(
            id=f"{cid}-1", seq=1, flow_id="quiz", flow_version=1, site_id="s",
            context=VisitorContext(), **head,
        ),
        ButtonPressed(id=f"{cid}-2", seq=2, node_id="intro", button_id=answer, **head),
        ButtonPressed(id=f"{cid}-3", seq=3, node_id=POINT[0], button_id=POINT[1], **head),
        EdgeChosen(
            id=f"{cid}-4", seq=4, node_id=POINT[0], button_id=POINT[1],
            candidates=CANDIDATES, chosen=edge, propensity=1 / 3,
            policy_version="uniform-v1", seed=1, **head,
        ),
    ]  # fmt: skip
    if lead:
        events.append(
            LeadCaptured(
                id=f"{cid}-5", seq=5, node_id="contact", site_id="s",
                fields_present=("email",), consent=True, sealed="x", **head,
            )
        )  # fmt: skip
    return events


async def feed(h: Harness, n: int, start: int = 0, lead_if: str = "colour") -> None:
    """``n`` conversations: the answer is ``yes`` or ``no``; ``lead_if`` wins."""
    for i in range(start, start + n):
        answer = "yes" if i % 2 else "no"
        edge = CANDIDATES[i % 3]
        lead = edge == lead_if and answer == "yes"
        h.ledger.observe(visit(f"c{i:05d}", answer, edge, lead, T0 + 10.0 * i))
    h.ledger.observe(visit("late", "no", "note", False, T0 + 10.0 * (start + n) + 10_000))
    h.ledger.expire()


async def test_counted_decisions_reach_the_learner_with_their_answers() -> None:
    ledger = RewardLedger(idle_seconds=60.0)
    ledger.observe(visit("a", "yes", "colour", True, T0))
    ledger.observe(visit("b", "no", "extra", False, T0 + 1))
    ledger.observe(visit("z", "no", "note", False, T0 + 500))  # moves the log's time on
    ledger.expire()
    taken = ledger.take_outcomes()
    [(key, outcomes)] = taken.items()
    assert key.flow_id == "quiz"
    assert [(o.conversation_id, o.edge, o.success) for o in outcomes] == [
        ("a", "colour", True),
        ("b", "extra", False),
    ]
    assert outcomes[0].answers == (("intro", "yes"), POINT)  # the press at the point last
    assert ledger.take_outcomes() == {}  # drained


async def test_between_fits_the_learner_is_published_and_each_fit_reseeds_it() -> None:
    h = Harness(schedule=ONLINE)
    await feed(h, 60)
    await h.tick()
    [fit] = h.published
    state = h.scheduler.flows["quiz"]
    assert state.learner is not None and state.learner.anchor == fit.version
    await feed(h, 60, start=60)
    await h.tick(31.0)
    assert len(h.published) == 2
    update = h.published[-1]
    assert update.version == f"{fit.version}.1"
    assert h.updates.calls == []  # no conjugate update: the learner's posterior instead
    assert update.points[POINT].answers  # it learnt from the earlier answer
    assert h.policy.snapshots["quiz"].version == update.version  # installed


async def test_a_refused_fit_with_a_few_divergences_publishes_the_online_posterior() -> None:
    h = Harness(schedule=ONLINE)

    async def refused(request: FitRequest) -> FitReport:
        h.fit.requests.append(request)
        diagnostics = {
            "divergences": 3,
            "chains": 2,
            "draws": 500,
            "rhat_max": 1.005,
            "ess_bulk_min": 600.0,
        }
        return FitReport(None, diagnostics, "3 divergent transitions", 2.0)

    h.scheduler._fit = refused
    await feed(h, 60)
    await h.tick()
    [fallback] = h.published
    assert fallback.version.endswith(".online.1")
    assert h.scheduler.status()["quiz"]["failures"] == 1


async def test_a_refused_fit_without_outcomes_to_learn_from_publishes_nothing() -> None:
    h = Harness(schedule=replace(ONLINE, online=False))
    h.fit.answer = "diagnostics"
    await feed(h, 60)
    await h.tick()
    assert h.published == []


async def test_a_learner_that_keeps_over_a_fit_is_published_at_once_unless_updates_are_off() -> (
    None
):
    """A learner with context pairs keeps its posterior over a fit without pairs; its
    posterior follows the fit at once, except when ``update_seconds`` is 0 ("no
    publications between fits"): then the fit is what the processors decide with."""
    for update_seconds, expected in ((30.0, 2), (0.0, 1)):
        h = Harness(schedule=replace(ONLINE, pairs=True, update_seconds=update_seconds))
        await feed(h, 60)
        await h.tick()
        fit = h.published[0]
        assert not any(p.pairs for p in fit.points.values())
        assert len(h.published) == expected, update_seconds
        assert h.policy.snapshots["quiz"].version == h.published[-1].version
        if expected == 2:
            assert h.published[-1].version == f"{fit.version}.1"


async def test_an_update_waiting_for_a_batch_being_learnt_leaves_the_event_loop_free() -> None:
    """The posterior is derived off the event loop: while another thread holds the
    learner (a batch being learnt), visitors' callbacks keep running."""
    h = Harness(schedule=ONLINE)
    await feed(h, 60)
    await h.tick()
    await feed(h, 60, start=60)
    await h.tick()  # learnt, not yet due for publication
    assert len(h.published) == 1
    learning = h.scheduler._learning
    held, release = threading.Event(), threading.Event()

    def learn_a_long_batch() -> None:
        with learning:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=learn_a_long_batch)
    holder.start()
    held.wait(5)
    ticks = 0

    async def visitor_callbacks() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    callbacks = asyncio.create_task(visitor_callbacks())
    update = asyncio.create_task(h.tick(31.0))
    await asyncio.sleep(0.3)
    assert not update.done() and ticks >= 20  # the loop ran while the update waited
    release.set()
    await update
    callbacks.cancel()
    holder.join()
    assert h.published[-1].version.endswith(".1")


async def test_a_change_the_learner_detected_is_published_at_the_next_tick() -> None:
    """Between the regular publications (every ``update_seconds``) a detected
    change does not wait: the visitors meanwhile would get the old world's best."""
    h = Harness(schedule=ONLINE)
    await feed(h, 60)
    await h.tick()
    [fit] = h.published
    await feed(h, 60, start=60)
    await h.tick(5.0)  # learnt, within the 30 s between publications: nothing yet
    assert h.published == [fit]
    state = h.scheduler.flows["quiz"]
    assert state.learner is not None
    state.learner.changes += 1  # as the detector does when a point's world changed
    await h.tick(1.0)
    assert [s.version for s in h.published] == [fit.version, f"{fit.version}.1"]
    assert state.changes_published == state.learner.changes
    await feed(h, 20, start=120)
    await h.tick(1.0)  # learnt again, but no new change: the interval rules again
    assert len(h.published) == 2
