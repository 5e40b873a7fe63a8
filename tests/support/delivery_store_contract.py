"""The contract of :class:`~services.delivery.store.DeliveryStore`, one suite for every adapter.

:class:`DeliveryStoreContract` holds the cases; a test module subclasses it
(``class TestX(DeliveryStoreContract)``) and provides an ``opener`` fixture:
an async callable that opens and starts one more handle on the *same*
storage (the in-memory fake hands back itself; SQLite opens the file again;
Redis makes a client of its own), closing them all at teardown. The
``store`` fixture is the first handle; races use a second one.

The in-memory fake (:mod:`services.delivery.memory_store`) is the reference:
every case here passes on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import pytest

from schemas.commands import VisitorContext
from services.conversation.state import ConversationState, Rejection, Step
from services.delivery.model import (
    STATUSES,
    Answer,
    Attempt,
    Delivery,
    Frame,
    Label,
    LeadSnapshot,
    Outcome,
    Status,
    delivery_id,
)
from services.delivery.store import DeliveryStore

T0 = 1_700_000_000.0
Opener = Callable[[], Awaitable[DeliveryStore]]


def lead(n: int, site: str = "a", captured_at: float | None = None) -> LeadSnapshot:
    return LeadSnapshot(
        event_id=f"ev{n:04d}",
        conversation_id=f"c{n:04d}",
        site_id=site,
        flow_id="solar",
        flow_version=3,
        node_id="contact",
        captured_at=T0 + n if captured_at is None else captured_at,
        started_at=T0 - 60.5,
        consent=True,
        fields_present=("email", "phone"),
        sealed=f"sealed-blob-{n}",
        context=VisitorContext(device="mobile", referrer="https://r.example/", utm_source="ads"),
        answers=(Answer(node_id="q1", button_id="yes"), Answer(node_id="q2", button_id="b")),
    )


def delivery(
    n: int,
    site: str = "a",
    destination: str = "hook",
    *,
    status: Status = "pending",
    next_at: float | None = None,
    captured_at: float | None = None,
) -> Delivery:
    snap = lead(n, site, captured_at)
    return Delivery(
        id=delivery_id(snap.event_id, destination),
        site_id=site,
        destination=destination,
        kind="webhook",
        lead=snap,
        created_at=T0 + n + 0.25,
        status=status,
        next_at=T0 + n + 0.25 if next_at is None else next_at,
        series_at=T0 + n + 0.25,
    )


def state(cid: str, updated_at: float, seq: int = 3) -> ConversationState:
    return ConversationState(
        cid,
        seq=seq,
        last_command_seq=2,
        status="active",
        flow_id="solar",
        flow_version=3,
        site_id="a",
        context=VisitorContext(locale="de", time_zone="Europe/Berlin"),
        steps=(Step(2, "q1", 1, "yes"), Step(3, "q2", 2)),
        last_rejection=Rejection("bad", "detail", {"email": "invalid"}),
        started_at=T0 - 10,
        updated_at=updated_at,
    )


def attempted(d: Delivery, at: float, status: Status, next_at: float = 0.0) -> Delivery:
    """``d`` after one more attempt that left it ``status``."""
    outcome: dict[Status, Outcome] = {
        "pending": "retry",
        "delivered": "delivered",
        "dead": "retry",
        "erased": "erased",
    }
    return replace(
        d,
        status=status,
        next_at=next_at,
        attempts=(
            *d.attempts,
            Attempt(at=at, seconds=0.125, outcome=outcome[status], status_code=503, detail="x"),
        ),
        delivered_at=at if status == "delivered" else d.delivered_at,
        reason="gave up" if status == "dead" else d.reason,
    )


async def all_pages(
    store: DeliveryStore, site: str | None, status: Status | None, limit: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.page(site, status, limit, cursor)
        assert len(page.deliveries) <= limit
        pages.append([d.id for d in page.deliveries])
        if page.next_cursor is None:
            return pages
        assert page.deliveries, "a page that says more follows is not empty"
        assert len(pages) < 1_000, "the cursor does not advance"
        cursor = page.next_cursor


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [d.id for d in deliveries]


class DeliveryStoreContract:
    """The cases. Subclasses provide the ``opener`` fixture."""

    @pytest.fixture
    async def store(self, opener: Opener) -> DeliveryStore:
        return await opener()

    # -- deliver_since, positions, states, take_in -------------------------------

    async def test_deliver_since_is_set_by_the_first_call_ever(
        self, store: DeliveryStore, opener: Opener
    ) -> None:
        assert await store.deliver_since(T0) == T0
        assert await store.deliver_since(T0 + 50) == T0
        other = await opener()
        assert await other.deliver_since(T0 + 99) == T0

    async def test_take_in_records_positions_states_and_deliveries_together(
        self, store: DeliveryStore
    ) -> None:
        assert await store.positions() == {}
        assert await store.states(["c1"]) == {}
        s1 = state("c1", T0)
        new = await store.take_in({"c1": s1}, [delivery(1), delivery(2)], {0: 10, 1: 4})
        assert new == 2
        assert await store.positions() == {0: 10, 1: 4}
        assert await store.states(["c1", "c2"]) == {"c1": s1}
        assert await store.get(delivery(1).id) == delivery(1)
        await store.take_in({}, [], {1: 9, 2: 1})
        assert await store.positions() == {0: 10, 1: 9, 2: 1}

    async def test_take_in_keeps_replaces_and_forgets_states(self, store: DeliveryStore) -> None:
        await store.take_in({"c1": state("c1", T0), "c2": state("c2", T0)}, [], {0: 1})
        newer = state("c1", T0 + 5, seq=7)
        await store.take_in({"c1": newer, "c2": None, "c3": None}, [], {0: 2})
        assert await store.states(["c1", "c2", "c3"]) == {"c1": newer}
        assert await store.states([]) == {}

    async def test_take_in_adds_a_delivery_id_once_and_never_overwrites_it(
        self, store: DeliveryStore
    ) -> None:
        """A stretch of the log read twice must not reset a delivered lead to pending."""
        first = delivery(1)
        assert await store.take_in({}, [first], {0: 1}) == 1
        done = attempted(first, T0 + 5, "delivered")
        await store.save(done)
        assert await store.take_in({}, [first, delivery(2)], {0: 2}) == 1
        assert await store.get(first.id) == done
        assert await store.take_in({}, [first, delivery(2)], {0: 2}) == 0
        assert ids((await store.page(None, None, 10)).deliveries) == [delivery(2).id, first.id]
        assert (await store.summary()).counts == {"pending": 1, "delivered": 1}

    async def test_records_round_trip_exactly(self, store: DeliveryStore) -> None:
        d = replace(delivery(1), created_at=T0 + 1 / 3, next_at=T0 + 2 / 3, replays=2)
        await store.take_in({"c1": state("c1", T0 + 1 / 7)}, [d], {0: 1})
        assert await store.get(d.id) == d
        assert await store.states(["c1"]) == {"c1": state("c1", T0 + 1 / 7)}
        later = attempted(attempted(d, T0 + 3, "pending", T0 + 9.5), T0 + 10, "dead")
        await store.save(later)
        assert await store.get(d.id) == later
        assert (await store.page(None, None, 5)).deliveries == [later]
        assert await store.get("nope:hook") is None

    async def test_a_delivery_keeps_its_frame_through_claims_and_saves(
        self, store: DeliveryStore
    ) -> None:
        """The frame fixed at intake is what every attempt sends: it must come back
        from every read, exactly, and a record without one stays without one."""
        framed = Frame(
            transcript_url="http://127.0.0.1:41001/api/v1/conversations/c0001",
            flow_title="Solar \u00e9 quote",
            consent_text="I agree",
            consent_fields=("consent",),
            labels=(Label(question="Roof?", answer="Yes"), Label(question="q2", answer="b")),
        )
        d = replace(delivery(1), frame=framed)
        await store.take_in({}, [d, delivery(2)], {0: 1})
        assert await store.get(d.id) == d
        assert (await store.get(delivery(2).id)) == delivery(2)
        claimed = await store.claim_due(T0 + 10, 10, 30.0)
        assert [c.frame for c in claimed] == [framed, None]
        later = attempted(d, T0 + 3, "pending", T0 + 9.5)
        await store.save(later)
        assert await store.get(d.id) == later
        assert (await store.page(None, None, 5)).deliveries[1].frame == framed

    # -- claims and saves ----------------------------------------------------------

    async def test_claim_due_returns_due_pending_oldest_due_first_up_to_limit(
        self, store: DeliveryStore
    ) -> None:
        batch = [
            delivery(1, next_at=T0 + 30),
            delivery(2, next_at=T0 + 10),
            delivery(3, next_at=T0 + 20),
            delivery(4, next_at=T0 + 10),  # a tie with 2: by id
            delivery(5, next_at=T0 + 99),  # not due
            delivery(6, next_at=T0, status="dead"),
            delivery(7, next_at=T0, status="delivered"),
        ]
        await store.take_in({}, batch, {0: 1})
        got = await store.claim_due(T0 + 50, 3, lease=60)
        assert ids(got) == [delivery(2).id, delivery(4).id, delivery(3).id]
        assert got[0] == batch[1]
        assert ids(await store.claim_due(T0 + 50, 10, lease=60)) == [delivery(1).id]
        assert await store.claim_due(T0 + 50, 10, lease=60) == []
        assert await store.claim_due(T0 + 50, 0, lease=60) == []

    async def test_a_claimed_delivery_comes_back_only_when_its_lease_expires(
        self, store: DeliveryStore
    ) -> None:
        """A worker that died mid-attempt leaves the claim to expire; another retries."""
        await store.take_in({}, [delivery(1, next_at=T0)], {0: 1})
        assert ids(await store.claim_due(T0, 5, lease=30)) == [delivery(1).id]
        assert await store.claim_due(T0 + 29.5, 5, lease=30) == []
        again = await store.claim_due(T0 + 30, 5, lease=30)
        assert again == [delivery(1, next_at=T0)]
        assert await store.claim_due(T0 + 59, 5, lease=30) == []

    async def test_a_saved_pending_delivery_is_claimable_at_its_next_at(
        self, store: DeliveryStore
    ) -> None:
        d = delivery(1, next_at=T0)
        await store.take_in({}, [d], {0: 1})
        [claimed] = await store.claim_due(T0, 5, lease=300)
        retry = attempted(claimed, T0 + 1, "pending", next_at=T0 + 10)
        await store.save(retry)
        assert await store.claim_due(T0 + 9.9, 5, lease=300) == []
        assert await store.claim_due(T0 + 10, 5, lease=300) == [retry]
        # a deferral saved without an attempt (breaker open, destination disabled)
        deferred = replace(retry, next_at=T0 + 20)
        await store.save(deferred)
        assert await store.claim_due(T0 + 20, 5, lease=300) == [deferred]

    @pytest.mark.parametrize("final", ["delivered", "dead", "erased"])
    async def test_a_delivery_saved_as_final_leaves_the_due_set(
        self, store: DeliveryStore, final: Status
    ) -> None:
        await store.take_in({}, [delivery(1, next_at=T0), delivery(2, next_at=T0 + 1)], {0: 1})
        [claimed, _] = await store.claim_due(T0 + 1, 5, lease=10)
        await store.save(attempted(claimed, T0 + 2, final, next_at=T0 + 3))
        assert await store.claim_due(T0 + 1_000, 5, lease=10) == [delivery(2, next_at=T0 + 1)]
        assert await store.claim_due(T0 + 9_000, 5, lease=10) == [delivery(2, next_at=T0 + 1)]
        # an operator's retry makes it pending again
        back = replace(attempted(claimed, T0 + 2, final), status="pending", next_at=T0 + 9_500)
        await store.save(back)
        assert await store.claim_due(T0 + 9_500, 5, lease=10) == [delivery(2, next_at=T0 + 1), back]

    # -- listing --------------------------------------------------------------------

    async def test_page_lists_newest_first_filtered_by_site_and_status(
        self, store: DeliveryStore
    ) -> None:
        batch = [delivery(n, site="ab"[n % 2]) for n in range(10)]
        await store.take_in({}, batch[:4], {0: 1})
        await store.take_in({}, batch[4:], {0: 2})
        await store.save(attempted(batch[3], T0, "delivered"))
        await store.save(attempted(batch[6], T0, "dead"))
        await store.save(attempted(batch[7], T0, "delivered"))
        newest = list(reversed(batch))
        page = await store.page(None, None, 100)
        assert ids(page.deliveries) == ids(newest) and page.next_cursor is None
        assert page.deliveries[2] == attempted(batch[7], T0, "delivered")
        site_b = await store.page("b", None, 100)
        assert ids(site_b.deliveries) == [d.id for d in newest if d.site_id == "b"]
        delivered = await store.page(None, "delivered", 100)
        assert ids(delivered.deliveries) == [batch[7].id, batch[3].id]
        assert ids((await store.page("a", "dead", 100)).deliveries) == [batch[6].id]
        assert (await store.page("b", "dead", 100)).deliveries == []
        assert (await store.page("nobody", None, 100)).deliveries == []

    @pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
    async def test_the_cursor_walks_every_page_without_gaps_or_repeats(
        self, store: DeliveryStore, limit: int
    ) -> None:
        batch = [delivery(n, site="ab"[n % 3 == 0], destination=f"d{n % 2}") for n in range(15)]
        for start in range(0, 15, 4):
            await store.take_in({}, batch[start : start + 4], {0: start})
        for n in (0, 4, 5, 9, 12):
            await store.save(attempted(batch[n], T0, "delivered"))
        newest = list(reversed(batch))
        for site in (None, "a", "b"):
            for status in (None, "pending", "delivered"):
                want = [
                    d.id
                    for d in newest
                    if site in (None, d.site_id)
                    and status
                    in (None, "delivered" if batch.index(d) in (0, 4, 5, 9, 12) else "pending")
                ]
                pages = await all_pages(store, site, status, limit)
                assert [i for p in pages for i in p] == want, (site, status)
                assert all(len(p) == limit for p in pages[:-1]), (site, status)

    async def test_the_cursor_stays_put_when_deliveries_arrive_between_pages(
        self, store: DeliveryStore
    ) -> None:
        """A list walked while leads come in neither repeats nor skips what it had."""
        await store.take_in({}, [delivery(n) for n in range(6)], {0: 1})
        first = await store.page("a", None, 2)
        assert first.next_cursor is not None
        await store.take_in({}, [delivery(n) for n in range(6, 9)], {0: 2})
        rest: list[str] = []
        cursor: str | None = first.next_cursor
        while cursor is not None:
            page = await store.page("a", None, 2, cursor)
            rest.extend(ids(page.deliveries))
            cursor = page.next_cursor
        assert ids(first.deliveries) + rest == [delivery(n).id for n in reversed(range(6))]

    async def test_delivered_since_by_site_capture_time_and_destination(
        self, store: DeliveryStore
    ) -> None:
        batch = [
            delivery(1, destination="hook", captured_at=T0 + 1),
            delivery(2, destination="mail", captured_at=T0 + 2),
            delivery(3, destination="hook", captured_at=T0 + 3),
            delivery(4, destination="hook", captured_at=T0 + 4),  # stays pending
            delivery(5, site="b", destination="hook", captured_at=T0 + 5),
            delivery(6, destination="hook", captured_at=T0 + 6),  # dead
        ]
        await store.take_in({}, batch, {0: 1})
        done = {n: attempted(batch[n - 1], T0 + 9, "delivered") for n in (1, 2, 3, 5)}
        for d in done.values():
            await store.save(d)
        await store.save(attempted(batch[5], T0 + 9, "dead"))
        assert await store.delivered_since("a", T0, None) == [done[1], done[2], done[3]]
        assert await store.delivered_since("a", T0 + 2, None) == [done[2], done[3]]
        assert await store.delivered_since("a", T0 + 2, "hook") == [done[3]]
        assert await store.delivered_since("a", T0 + 3.5, None) == []
        assert await store.delivered_since("b", T0, "hook") == [done[5]]
        assert await store.delivered_since("b", T0, "mail") == []
        assert await store.delivered_since("c", T0, None) == []

    # -- summary ----------------------------------------------------------------------

    async def test_summary_counts_and_oldest_pending_per_site_and_overall(
        self, store: DeliveryStore
    ) -> None:
        """Site A's summary never counts site B's deliveries (tenant isolation)."""
        empty = await store.summary()
        assert {s: empty.counts.get(s, 0) for s in STATUSES} == dict.fromkeys(STATUSES, 0)
        assert empty.oldest_pending_at is None
        batch = [
            delivery(1, "a", captured_at=T0 + 7),
            delivery(2, "a", captured_at=T0 + 3),
            delivery(3, "a", captured_at=T0 + 5),
            delivery(4, "b", captured_at=T0 + 1),
            delivery(5, "b", captured_at=T0 + 9),
        ]
        await store.take_in({}, batch, {0: 1})
        await store.save(attempted(batch[1], T0, "delivered"))
        await store.save(attempted(batch[3], T0, "dead"))
        a, b, every = await store.summary("a"), await store.summary("b"), await store.summary()
        assert (dict(a.counts), a.oldest_pending_at) == ({"pending": 2, "delivered": 1}, T0 + 5)
        assert (dict(b.counts), b.oldest_pending_at) == ({"pending": 1, "dead": 1}, T0 + 9)
        assert dict(every.counts) == {"pending": 3, "delivered": 1, "dead": 1}
        assert every.oldest_pending_at == T0 + 5
        await store.save(attempted(batch[0], T0, "erased"))
        await store.save(attempted(batch[2], T0, "delivered"))
        a = await store.summary("a")
        assert (dict(a.counts), a.oldest_pending_at) == ({"delivered": 2, "erased": 1}, None)
        nobody = await store.summary("nobody")
        assert sum(nobody.counts.values()) == 0 and nobody.oldest_pending_at is None

    # -- destinations, abandoned states -------------------------------------------------

    async def test_disable_enable_and_list_disabled_destinations(
        self, store: DeliveryStore
    ) -> None:
        assert await store.disabled() == {}
        await store.disable("a", "hook", "410 Gone", T0)
        await store.disable("b", "hook", "410 Gone again", T0 + 1)
        await store.disable("a", "hook", "410 Gone (twice)", T0 + 2)
        assert await store.disabled() == {
            ("a", "hook"): "410 Gone (twice)",
            ("b", "hook"): "410 Gone again",
        }
        assert await store.enable("a", "hook") is True
        assert await store.enable("a", "hook") is False
        assert await store.enable("a", "mail") is False
        assert await store.disabled() == {("b", "hook"): "410 Gone again"}

    async def test_forget_states_before_drops_only_the_untouched(
        self, store: DeliveryStore
    ) -> None:
        await store.take_in(
            {"c1": state("c1", T0), "c2": state("c2", T0 + 10), "c3": state("c3", T0 + 20)},
            [],
            {0: 1},
        )
        assert await store.forget_states_before(T0 + 10) == 1
        assert set(await store.states(["c1", "c2", "c3"])) == {"c2", "c3"}
        await store.take_in({"c2": state("c2", T0 + 30)}, [], {0: 2})
        assert await store.forget_states_before(T0 + 25) == 1
        assert set(await store.states(["c1", "c2", "c3"])) == {"c2"}
        assert await store.forget_states_before(T0 + 25) == 0

    # -- several workers -----------------------------------------------------------------

    async def test_two_claimers_racing_never_get_the_same_delivery(
        self, store: DeliveryStore, opener: Opener
    ) -> None:
        other = await opener()
        batch = [delivery(n, next_at=T0) for n in range(40)]
        await store.take_in({}, batch, {0: 1})
        seen: list[str] = []
        for _ in range(6):
            mine, theirs = await asyncio.gather(
                store.claim_due(T0 + 1, 4, lease=60), other.claim_due(T0 + 1, 4, lease=60)
            )
            assert not set(ids(mine)) & set(ids(theirs))
            seen.extend(ids(mine) + ids(theirs))
        many = await asyncio.gather(*(h.claim_due(T0 + 1, 3, 60) for h in [store, other] * 5))
        seen.extend(i for got in many for i in ids(got))
        assert len(seen) == len(set(seen)) == 40
        assert sorted(seen) == sorted(ids(batch))
