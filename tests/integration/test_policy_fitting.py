"""The fitting schedule with fakes: when it fits, what it publishes, updates between
fits, failures, flow versions, kill switches, and the embedded mode's log feed.
No PyMC and no worker process here: the fit is a coroutine that returns a snapshot."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import numpy as np
import pytest

from policy.features import FEATURE_NAMES
from policy.fit_request import FitReport, FitRequest
from policy.fit_versions import fit_seed, fit_version
from policy.fitting import FitScheduler, conjugate_update
from policy.flow_snapshots import decision_points, flow_checker, uniform_snapshot
from policy.log_feed import LogFeed
from policy.reward_counts import FlowCounts, FlowKey, OutcomeKey
from policy.rewards import RewardLedger
from policy.schedule_publisher import Update
from policy.settings import FitSettings, PolicySettings, Schedule
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot, SnapshotError
from policy.thompson import ThompsonPolicy
from schemas.codec import encode
from schemas.commands import VisitorContext
from schemas.events import ConversationStarted, EdgeChosen, Event, LeadCaptured
from services.catalog import FlowCatalog
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from services.policy_port import DecisionPoint
from tests.unit.flows import quiz

CELL = "desktop|direct|morning|en"
POINT = ("size", "big")
CANDIDATES = ("colour", "extra", "note")
SCHEDULE = Schedule(
    refit_seconds=600.0, refit_outcomes=0, min_outcomes=10, update_seconds=30.0, tick_seconds=1
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def posterior(draws: int = 50, best: int = 1, k: int = 3) -> PointPosterior:
    rng = np.random.default_rng(best)
    base = rng.normal(-2.0, 0.1, size=(draws, k)).astype(np.float32)
    base[:, best] += 1.0
    return PointPosterior(
        node_id=POINT[0],
        button_id=POINT[1],
        candidates=CANDIDATES[:k],
        base=base,
        slopes=np.zeros((draws, k, len(FEATURE_NAMES)), dtype=np.float32),
    )


class FakeFit:
    """Answers every request with a snapshot of the quiz's decision point (or as told)."""

    def __init__(self) -> None:
        self.requests: list[FitRequest] = []
        self.answer: str = "ok"  # "ok", "diagnostics", "raise", "wrong-points"
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: FitRequest) -> FitReport:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.answer == "raise":
            raise RuntimeError("worker exploded")
        if self.answer == "diagnostics":
            return FitReport(None, {"r_hat_max": 1.4}, "r-hat 1.40 > 1.01", 2.0)
        point = posterior()
        if self.answer == "wrong-points":
            point = replace(point, node_id="nowhere")
        snapshot = PolicySnapshot(
            flow_id=request.flow_id,
            flow_version=request.flow_version,
            version=request.version,
            created_at=0.0,  # the schedule stamps it
            points={point.key: point},
            guardrails=request.guardrails,
            diagnostics={"r_hat_max": 1.001},
        )
        return FitReport(snapshot, {"r_hat_max": 1.001, "ess_min": 800.0}, None, 1.5)


class Updates:
    def __init__(self) -> None:
        self.calls: list[tuple[PolicySnapshot, FlowCounts, str, float]] = []

    def __call__(
        self, snapshot: PolicySnapshot, delta: FlowCounts, version: str, at: float
    ) -> PolicySnapshot:
        self.calls.append((snapshot, delta, version, at))
        return replace(snapshot, version=version, created_at=at)


class Harness:
    def __init__(
        self,
        schedule: Schedule = SCHEDULE,
        settings: PolicySettings | None = None,
        catalog: FlowCatalog | None = None,
        update: Update | None = None,
    ) -> None:
        self.ledger = RewardLedger()
        self.clock = Clock()
        self.wall = Clock(1_764_115_200.0)
        self.fit = FakeFit()
        self.updates = Updates()
        self.published: list[PolicySnapshot] = []
        self.policy = ThompsonPolicy()
        settings = settings or PolicySettings(schedule=schedule)
        self.scheduler = FitScheduler(
            self.ledger,
            schedule,
            FitSettings(draws=50, tune=50, chains=2),
            settings.guardrails,
            self.fit,
            self.publish,
            update or self.updates,
            catalog=FlowCatalog([quiz(1), quiz(2)]) if catalog is None else catalog,
            clock=self.clock,
            wall=self.wall,
        )

    async def publish(self, snapshot: PolicySnapshot) -> None:
        self.published.append(snapshot)
        self.policy.install(snapshot)

    def outcomes(
        self, n: int, version: int = 1, edge: str = "extra", success: bool = False
    ) -> FlowCounts:
        counts = self.ledger.flows.setdefault(FlowKey("quiz", version), FlowCounts())
        counts.candidates[POINT] = CANDIDATES
        for _ in range(n):
            counts.add(OutcomeKey(*POINT, edge, CELL), success)
        counts.conversations += n
        return counts

    async def tick(self, advance: float = 0.0) -> None:
        self.clock.now += advance
        self.wall.now += advance
        await self.scheduler.tick()
        await self.scheduler.idle()


async def test_no_fit_before_min_outcomes_then_a_first_fit_is_published() -> None:
    h = Harness()
    h.outcomes(9)
    await h.tick()
    assert h.fit.requests == [] and h.published == []
    h.outcomes(1)
    await h.tick()
    [request] = h.fit.requests
    assert (request.flow_id, request.flow_version) == ("quiz", 1)
    assert request.counts.trials() == 10
    assert request.options == {"draws": 50, "tune": 50, "chains": 2}
    assert request.version == "quiz@1#20251126T000000.000Z"
    assert request.seed == fit_seed(request.version) and 0 <= request.seed < 2**32
    assert request.guardrails == Guardrails(min_exploration=0.05, holdout=0.0, killed=False)
    [snapshot] = h.published
    assert snapshot.version == request.version
    assert snapshot.created_at == h.wall.now  # stamped when published, not by the fit
    assert h.scheduler.status()["quiz"]["fits"] == 1


def lead_rate(counts: FlowCounts) -> float:
    return sum(t.successes for t in counts.tallies.values()) / counts.trials()


async def test_the_first_fit_and_the_updates_see_the_true_lead_rate() -> None:
    """Regression (issue 16): leads counted at once and failures only at their horizon
    made the first fit see 100% successes, and updates weigh new successes against
    old failures. A lead every fifth conversation, final at once; the others abandoned
    (final ``idle`` seconds later): the fit and every update see about 20%."""
    h = Harness()
    at = 1_764_115_200.0
    for i in range(400):
        h.ledger.observe(conversation(f"c{i:03d}", "extra", i % 5 == 0, at=at + 30.0 * i))
        h.ledger.expire()  # what the services' before_tick does, by the log's time
        await h.tick(1.0)
    first = h.fit.requests[0]
    assert SCHEDULE.min_outcomes <= first.counts.trials() <= SCHEDULE.min_outcomes + 1
    assert 0.15 <= lead_rate(first.counts) <= 0.3  # 2 or 3 leads in 10 or 11
    assert len(h.updates.calls) >= 5
    for _, delta, _, _ in h.updates.calls:
        assert 0.1 <= lead_rate(delta) <= 0.3


async def test_the_fit_gets_a_copy_of_the_counts_that_does_not_move() -> None:
    h = Harness()
    h.fit.gate = asyncio.Event()
    h.outcomes(10)
    await h.scheduler.tick()
    await asyncio.sleep(0)
    h.outcomes(5)  # counted while the fit runs
    h.fit.gate.set()
    await h.scheduler.idle()
    assert h.fit.requests[0].counts.trials() == 10
    assert h.ledger.flows[FlowKey("quiz", 1)].trials() == 15


async def test_refits_wait_for_the_interval_and_for_enough_new_outcomes() -> None:
    h = Harness(replace(SCHEDULE, update_seconds=0.0))
    h.outcomes(10)
    await h.tick()
    h.outcomes(50)
    await h.tick(599.0)
    assert len(h.fit.requests) == 1  # interval not over
    await h.tick(1.0)
    assert len(h.fit.requests) == 2  # interval over, 50 new outcomes
    await h.tick(600.0)
    assert len(h.fit.requests) == 2  # interval over, but nothing new
    h.outcomes(9)
    await h.tick(600.0)
    assert len(h.fit.requests) == 2  # fewer than min_outcomes new
    h.outcomes(1)
    await h.tick()
    assert len(h.fit.requests) == 3
    assert [s.version for s in h.published] == [r.version for r in h.fit.requests]


async def test_refit_outcomes_refits_before_the_interval() -> None:
    h = Harness(replace(SCHEDULE, refit_outcomes=25, update_seconds=0.0))
    h.outcomes(10)
    await h.tick()
    h.outcomes(24)
    await h.tick(5.0)
    assert len(h.fit.requests) == 1
    h.outcomes(1)
    await h.tick(5.0)
    assert len(h.fit.requests) == 2


async def test_conjugate_updates_between_fits_use_the_outcomes_since_the_fit() -> None:
    h = Harness()
    h.outcomes(10)
    await h.tick()
    fitted = h.published[-1]
    h.outcomes(3, edge="note", success=True)
    await h.tick(29.0)
    assert h.updates.calls == []  # not yet time
    await h.tick(1.0)
    [(base, delta, version, at)] = h.updates.calls
    assert base is fitted
    assert delta.trials() == 3
    assert {k.edge: (t.trials, t.successes) for k, t in delta.tallies.items()} == {"note": (3, 3)}
    assert version == f"{fitted.version}.1"
    assert h.published[-1].version == version and at > fitted.created_at
    await h.tick(30.0)
    assert len(h.updates.calls) == 1  # nothing new: nothing to update
    h.outcomes(2)
    await h.tick(0.0)
    _, delta, version, _ = h.updates.calls[-1]
    assert delta.trials() == 5  # always since the fit, never since the last update
    assert version == f"{fitted.version}.2"
    assert h.policy.snapshots["quiz"].version == version  # every one was newer


async def test_an_update_is_published_while_a_fit_runs() -> None:
    h = Harness(replace(SCHEDULE, refit_seconds=60.0))
    h.outcomes(10)
    await h.tick()
    h.fit.gate = asyncio.Event()
    h.outcomes(20)
    h.clock.now += 60.0
    await h.scheduler.tick()  # the refit starts and waits at the gate
    await asyncio.sleep(0)
    assert len(h.fit.requests) == 2
    h.outcomes(1)
    h.clock.now += 30.0
    await h.scheduler.tick()  # another fit may not start; the update goes out
    assert len(h.fit.requests) == 2
    assert h.published[-1].version == f"{h.published[0].version}.1"
    h.fit.gate.set()
    await h.scheduler.idle()
    assert h.published[-1].version == h.fit.requests[-1].version
    assert h.published[-1].created_at > h.published[-2].created_at
    assert h.policy.snapshots["quiz"].version == h.fit.requests[-1].version


async def test_a_fit_that_fails_its_diagnostics_publishes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    h.fit.answer = "diagnostics"
    h.outcomes(10)
    with caplog.at_level(logging.WARNING, "leadflow.policy.fitting"):
        await h.tick()
    assert h.published == []
    assert "r-hat 1.40 > 1.01" in caplog.text
    status = h.scheduler.status()["quiz"]
    assert status["failures"] == 1 and status["diagnostics"] == {"r_hat_max": 1.4}
    await h.tick(599.0)
    assert len(h.fit.requests) == 1  # not retried at once
    h.fit.answer = "ok"
    await h.tick(1.0)
    assert len(h.fit.requests) == 2  # retried after the interval, with the same counts
    assert h.fit.requests[1].counts.trials() == 10
    assert h.fit.requests[1].seed != h.fit.requests[0].seed
    assert len(h.published) == 1
    await h.tick(600.0)
    assert len(h.fit.requests) == 2  # published: back to waiting for new outcomes


async def test_a_crashing_fit_is_logged_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    h.fit.answer = "raise"
    h.outcomes(10)
    with caplog.at_level(logging.ERROR, "leadflow.policy.fitting"):
        await h.tick()
    assert h.published == [] and "worker exploded" in caplog.text
    h.fit.answer = "ok"
    await h.tick(600.0)
    assert len(h.published) == 1


async def test_a_snapshot_that_does_not_match_the_flow_is_not_published() -> None:
    h = Harness()
    h.fit.answer = "wrong-points"
    h.outcomes(10)
    await h.tick()
    assert h.published == []
    assert "nowhere" in h.scheduler.status()["quiz"]["last_reason"]


async def test_the_newest_flow_version_with_enough_outcomes_is_learned() -> None:
    h = Harness()
    h.outcomes(10, version=1)
    h.outcomes(5, version=2)
    await h.tick()
    assert [r.flow_version for r in h.fit.requests] == [1]
    h.outcomes(5, version=2)
    h.outcomes(3, version=1)
    await h.tick(1.0)
    assert [r.flow_version for r in h.fit.requests] == [1, 2]  # a new version: fit at once
    h.outcomes(50, version=1)
    await h.tick(3600.0)
    # version 1 is neither refitted nor updated any more: one snapshot per flow id
    assert all(s.flow_version == 2 for s in h.published[2:])
    assert h.updates.calls == [] or all(c[0].flow_version == 2 for c in h.updates.calls)


async def test_created_at_increases_even_when_the_wall_clock_does_not() -> None:
    h = Harness(replace(SCHEDULE, update_seconds=1.0))
    h.outcomes(10)
    await h.tick()
    for _ in range(3):
        h.outcomes(1)
        h.clock.now += 1.0
        await h.scheduler.tick()
    stamps = [s.created_at for s in h.published]
    assert len(stamps) == 4 and stamps == sorted(set(stamps))


def kill_point(conversation_id: str = "c1") -> DecisionPoint:
    return DecisionPoint(
        conversation_id=conversation_id,
        command_seq=3,
        flow_id="quiz",
        flow_version=1,
        node_id=POINT[0],
        button_id=POINT[1],
        candidates=CANDIDATES,
        context=VisitorContext(),
        at=1_764_115_200.0,
    )


async def test_a_killed_flow_without_a_fit_gets_a_kill_snapshot_from_the_catalog() -> None:
    h = Harness(settings=PolicySettings(schedule=SCHEDULE, killed=frozenset({"quiz"})))
    await h.tick()  # no outcomes at all
    [snapshot] = h.published
    assert snapshot.guardrails.killed and snapshot.flow_version == 2  # the latest version
    choice = h.policy.choose(replace(kill_point(), flow_version=2))
    assert (choice.chosen, choice.propensity) == ("colour", 1.0)
    h.outcomes(20, version=2)
    await h.tick(1.0)
    assert len(h.published) == 1  # once
    assert h.fit.requests == []  # a killed flow is not fitted
    # lifting the switch republishes: the uniform snapshot is exactly uniform
    again = await h.scheduler.set_guardrails("quiz", Guardrails())
    assert again is not None and not again.guardrails.killed
    assert again.version == f"{snapshot.version}.1"
    dist = h.policy.distribution(replace(kill_point(), flow_version=2))
    assert dist is not None and dist.probabilities() == pytest.approx((1 / 3,) * 3)
    await h.tick(1.0)
    assert [r.flow_version for r in h.fit.requests] == [2]  # and now it is learned
    assert h.policy.snapshots["quiz"].version == h.fit.requests[0].version


async def test_changing_guardrails_republishes_the_snapshot_under_a_new_version() -> None:
    h = Harness()
    h.outcomes(10)
    await h.tick()
    fitted = h.published[-1]
    changed = await h.scheduler.set_guardrails("quiz", Guardrails(0.1, 0.2, False))
    assert changed is not None and changed.version == f"{fitted.version}.1"
    assert changed.guardrails == Guardrails(0.1, 0.2, False)
    assert changed.points is fitted.points
    h.outcomes(5)
    await h.tick(30.0)
    assert h.published[-1].guardrails == Guardrails(0.1, 0.2, False)  # updates keep them
    await h.tick(600.0)
    h.outcomes(10)
    await h.tick(600.0)
    assert h.fit.requests[-1].guardrails == Guardrails(0.1, 0.2, False)  # so do fits


async def test_the_update_between_fits_is_the_conjugate_one() -> None:
    from policy.conjugate import update_snapshot

    assert conjugate_update() is update_snapshot
    h = Harness(update=update_snapshot)
    h.outcomes(10)
    await h.tick()
    fitted = h.published[-1]
    h.outcomes(40, edge="note", success=True)
    await h.tick(30.0)
    updated = h.published[-1]
    assert updated.version == f"{fitted.version}.1"
    assert updated.diagnostics["source"] == "conjugate"
    assert updated.diagnostics["since_trials"] == 40
    note = CANDIDATES.index("note")
    before = fitted.points[POINT].base[:, note].mean()
    assert updated.points[POINT].base[:, note].mean() > before  # 40 leads out of 40
    assert h.policy.snapshots["quiz"] is updated


def test_versions_read_like_the_docs_say() -> None:
    assert fit_version("solar-quote", 3, 1_764_115_200.25) == "solar-quote@3#20251126T000000.250Z"
    assert fit_seed("a") != fit_seed("b")


def test_flow_checker_refuses_unknown_versions_and_mismatched_points() -> None:
    check = flow_checker(FlowCatalog([quiz(1)]))
    good = uniform_snapshot(quiz(1), "quiz@1#x", 1.0, Guardrails())
    check(good)
    with pytest.raises(SnapshotError, match="not served here"):
        check(replace(good, flow_version=7))
    other = posterior(k=2)
    with pytest.raises(SnapshotError, match="candidates"):
        check(replace(good, points={other.key: other}))
    assert decision_points(quiz(1)) == {POINT: CANDIDATES}


def test_settings_from_the_environment() -> None:
    settings = PolicySettings.from_env(
        {
            "LEADFLOW_POLICY_HOLDOUT": "0.1",
            "LEADFLOW_POLICY_MIN_EXPLORATION": "0.02",
            "LEADFLOW_POLICY_KILLED": "solar-quote, saas-demo,",
            "LEADFLOW_POLICY_HORIZON_SECONDS": "60",
            "LEADFLOW_POLICY_REFIT_SECONDS": "5",
            "LEADFLOW_POLICY_MIN_OUTCOMES": "20",
            "LEADFLOW_POLICY_DRAWS": "100",
            "LEADFLOW_POLICY_TUNE": "50",
            "LEADFLOW_POLICY_PORT": "9000",
        }
    )
    assert settings.killed == {"solar-quote", "saas-demo"}
    assert settings.guardrails("saas-demo") == Guardrails(0.02, 0.1, True)
    assert settings.guardrails("insurance-quote") == Guardrails(0.02, 0.1, False)
    assert settings.horizon_seconds == 60.0 and settings.port == 9000
    assert (settings.schedule.refit_seconds, settings.schedule.min_outcomes) == (5.0, 20)
    assert settings.fit.options() == {"draws": 100, "tune": 50}
    assert defaults_options_are_the_model_s()
    defaults = PolicySettings.from_env({})
    assert (defaults.holdout, defaults.min_exploration, defaults.port) == (0.0, 0.05, 8091)
    assert defaults.horizon_seconds == 86400.0 and defaults.enabled
    for bad in (
        {"LEADFLOW_POLICY_HOLDOUT": "1.5"},
        {"LEADFLOW_POLICY_MIN_OUTCOMES": "zero"},
        {"LEADFLOW_POLICY": "greedy"},
    ):
        with pytest.raises(ValueError, match="LEADFLOW_POLICY"):
            PolicySettings.from_env(bad)


def test_the_learner_s_pair_scales_are_learnt_unless_switched_off() -> None:
    """LEADFLOW_POLICY_PAIR_SCALES: on by default (the learner learns each point's
    pair scales and publishes its pairs), off gives the weighed pairs; a value
    that is no switch is refused by name."""
    on = PolicySettings.from_env({}).schedule
    assert on.pairs and on.pair_ard and on.online_config().pair_ard
    off = PolicySettings.from_env({"LEADFLOW_POLICY_PAIR_SCALES": "off"}).schedule
    assert off.pairs and not off.pair_ard and not off.online_config().pair_ard
    with pytest.raises(ValueError, match="LEADFLOW_POLICY_PAIR_SCALES"):
        PolicySettings.from_env({"LEADFLOW_POLICY_PAIR_SCALES": "maybe"})


def test_the_idle_time_setting_is_validated_against_the_horizon() -> None:
    assert PolicySettings.from_env({}).idle_seconds == 1800.0
    assert PolicySettings.from_env({"LEADFLOW_POLICY_IDLE_SECONDS": "600"}).idle_seconds == 600
    short = PolicySettings.from_env({"LEADFLOW_POLICY_HORIZON_SECONDS": "60"})
    assert short.idle_seconds == 60.0  # the default never outlasts the window
    for bad, why in (
        ({"LEADFLOW_POLICY_IDLE_SECONDS": "0"}, "within"),
        ({"LEADFLOW_POLICY_IDLE_SECONDS": "half an hour"}, "a number"),
        (
            {"LEADFLOW_POLICY_IDLE_SECONDS": "7200", "LEADFLOW_POLICY_HORIZON_SECONDS": "3600"},
            "must not exceed LEADFLOW_POLICY_HORIZON_SECONDS",
        ),
    ):
        with pytest.raises(ValueError, match=f"LEADFLOW_POLICY_IDLE_SECONDS.*{why}"):
            PolicySettings.from_env(bad)


def defaults_options_are_the_model_s() -> bool:
    loose = PolicySettings.from_env(
        {"LEADFLOW_POLICY_MAX_RHAT": "1.1", "LEADFLOW_POLICY_MIN_ESS": "100"}
    )
    assert loose.fit.options() == {"max_rhat": 1.1, "min_ess": 100.0}
    return PolicySettings.from_env({}).fit.options() == {}


# ---- the embedded mode's feed -------------------------------------------------------------


def conversation(cid: str, edge: str, lead: bool, at: float = 1_764_115_200.0) -> list[Event]:
    events: list[Event] = [
        ConversationStarted(
            id=f"{cid}-1",
            seq=1,
            flow_id="quiz",
            flow_version=1,
            site_id="s",
            context=VisitorContext(),
            conversation_id=cid,
            command_seq=1,
            at=at,
        ),
        EdgeChosen(
            id=f"{cid}-2",
            seq=2,
            node_id=POINT[0],
            button_id=POINT[1],
            candidates=CANDIDATES,
            chosen=edge,
            propensity=1 / 3,
            policy_version="uniform-v1",
            seed=1,
            conversation_id=cid,
            command_seq=1,
            at=at,
        ),
    ]
    if lead:
        events.append(
            LeadCaptured(
                id=f"{cid}-3",
                seq=3,
                node_id="contact",
                site_id="s",
                fields_present=("email",),
                consent=True,
                sealed="x",
                conversation_id=cid,
                command_seq=1,
                at=at,
            )
        )
    return events


def append(log: MemoryLog, events: list[Event]) -> None:
    """As the SQLite log holds them: one record per event, one partition."""
    for event in events:
        log.append(0, encode(event), key=event.conversation_id.encode(), timestamp=event.at)


async def test_the_log_feed_sees_history_and_live_events_once_and_in_order() -> None:
    log = MemoryLog(1, name="events.db")
    history = [e for i in range(30) for e in conversation(f"h{i}", "extra", i % 3 == 0)]
    append(log, history)
    ledger = RewardLedger(horizon_seconds=3600.0)
    feed = LogFeed(ledger, page=7)
    # a conversation that started before serving, finished by a command while loading
    late = conversation("late", "note", True)
    append(log, late[:2])
    follower = MemoryLogFollower(log)
    await feed.begin(follower)  # serving begins: the history ends here
    live = [e for i in range(5) for e in conversation(f"n{i}", "colour", True)]

    async def serve() -> None:
        for event in [late[2], *live]:
            append(log, [event])
            feed.on_events([event])  # the service calls its listener after the append
            await asyncio.sleep(0)

    await asyncio.gather(feed.load(), serve())
    feed.on_events([])
    counts = ledger.flows[FlowKey("quiz", 1)]
    assert ledger.open_conversations() == 20  # the history's conversations without a lead
    # the 16 with a lead are final; counted only as far as no older one is open
    assert ledger.pending_outcomes() + counts.conversations == 16
    feed.on_events(conversation("an-hour-later", "colour", False, at=1_764_115_200.0 + 3600)[:1])
    ledger.expire()  # the log's time moved on: the 20 are abandoned, everything counts
    by_edge = {}
    for key, tally in counts.tallies.items():
        by_edge[key.edge] = (tally.trials, tally.successes)
    assert by_edge["colour"] == (5, 5)
    assert by_edge["note"] == (1, 1)  # the late lead reached the ledger after its start
    assert by_edge["extra"] == (30, 10)
    assert counts.tallies[OutcomeKey(*POINT, "extra", counts_cell(counts, "extra"))].trials == 30
    with pytest.raises(RuntimeError):
        follower.assigned()  # the history read, its follower is stopped


async def test_the_log_feed_skips_an_unreadable_record_of_the_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryLog(1, name="events.db")
    append(log, conversation("a", "extra", True))
    log.append(0, b"not an event")
    append(log, conversation("b", "extra", True))
    ledger = RewardLedger(horizon_seconds=3600.0)
    feed = LogFeed(ledger, page=2)
    await feed.begin(MemoryLogFollower(log))
    with caplog.at_level(logging.WARNING, "leadflow.policy.log_feed"):
        await feed.load()
    assert (feed.events, feed.skipped) == (6, 1)
    assert "events.db position 3" in caplog.text
    counts = ledger.flows[FlowKey("quiz", 1)]
    assert sum(t.successes for t in counts.tallies.values()) == 2


async def test_an_empty_log_has_no_history() -> None:
    feed = LogFeed(RewardLedger(horizon_seconds=3600.0))
    await feed.begin(MemoryLogFollower(MemoryLog(1, name="events.db")))
    await feed.load()
    assert feed.loaded.is_set() and feed.events == 0


def counts_cell(counts: FlowCounts, edge: str) -> str:
    [cell] = {k.cell for k in counts.tallies if k.edge == edge}
    return cell


def test_uniform_snapshot_has_exactly_uniform_win_shares() -> None:
    snapshot = uniform_snapshot(quiz(1), "quiz@1#u", 1.0, Guardrails(min_exploration=0.0))
    policy = ThompsonPolicy()
    assert policy.install(snapshot)
    dist = policy.distribution(kill_point())
    assert dist is not None and dist.thompson == pytest.approx((1 / 3,) * 3)
    chosen = {policy.choose(kill_point(f"c{i}")).chosen for i in range(60)}
    assert chosen == set(CANDIDATES)
