"""Aggregates per site, and each conversation once per node however it loops: the
pure plan, the in-memory store, and the funnel report's fold agreeing with both.

Hand-built events only (no simulated traffic): these tests stay cheap."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

from projector.engine import Projector
from projector.memory_store import InMemoryReadModel
from projector.plan import plan
from projector.report.fold import fold_funnel
from projector.views import ConversationView
from projector.write_set import LAYOUT_VERSION, WriteSet, daily_flow_key, funnel_key, utc_day
from schemas.commands import VisitorContext
from schemas.events import (
    ConversationCompleted,
    ConversationStarted,
    Event,
    LeadCaptured,
    NodeEntered,
    event_id,
)
from services.conversation.emitter import Header

T0 = 1_764_115_200.0  # 2025-11-26 00:00 UTC
DAY = utc_day(T0)


class Conv:
    """One conversation's events, with consecutive seqs."""

    def __init__(self, cid: str, site: str, flow: str = "quiz", version: int = 1) -> None:
        self.cid, self.seq, self.at = cid, 0, T0
        self.events: list[Event] = [
            ConversationStarted(
                **self._header(),
                flow_id=flow,
                flow_version=version,
                site_id=site,
                context=VisitorContext(device="mobile"),
            )
        ]
        self.site = site

    def _header(self) -> Header:
        self.seq += 1
        self.at += 1.0
        cid, seq = self.cid, self.seq
        return Header(
            conversation_id=cid, seq=seq, id=event_id(cid, seq), at=self.at, command_seq=seq
        )

    def enter(self, *nodes: str) -> Conv:
        for node in nodes:
            self.events.append(NodeEntered(**self._header(), node_id=node, kind="question"))
        return self

    def lead(self) -> Conv:
        self.events.append(
            LeadCaptured(
                **self._header(),
                node_id="form",
                site_id=self.site,
                fields_present=("email",),
                consent=True,
                sealed="c2VhbGVk",
            )
        )
        return self

    def complete(self, node: str) -> Conv:
        self.events.append(
            ConversationCompleted(**self._header(), node_id=node, lead_captured=False)
        )
        return self


def totals(write_sets: Iterable[WriteSet | None]) -> dict[str, Counter[str]]:
    """Every counter key's fields, summed over write sets."""
    out: dict[str, Counter[str]] = {}
    for ws in write_sets:
        assert ws is not None
        for inc in ws.increments:
            out.setdefault(inc.key, Counter())[inc.field] += inc.delta
    return out


def one_by_one(events: list[Event]) -> list[WriteSet | None]:
    """Plan event by event on the view each conversation's last step left (as a
    live projector does)."""
    views: dict[str, ConversationView | None] = {}
    sets = []
    for event in events:
        view, ws = plan(views.get(event.conversation_id), [event])
        views[event.conversation_id] = view
        sets.append(ws)
    return sets


def test_keys_of_one_site_are_apart_from_all_sites_and_other_sites() -> None:
    assert funnel_key("quiz", 1) == "funnel:quiz:1"
    assert funnel_key("quiz", 1, "acme") == "site:acme:funnel:quiz:1"
    assert daily_flow_key("quiz", DAY, "acme") == f"site:acme:daily:flow:quiz:{DAY}"
    keys = {
        funnel_key("quiz", 1),
        funnel_key("quiz", 1, "acme"),
        funnel_key("quiz", 1, "globex"),
        daily_flow_key("quiz", DAY),
        daily_flow_key("quiz", DAY, "acme"),
    }
    assert len(keys) == 5
    assert LAYOUT_VERSION >= 2


def test_a_funnel_of_a_shared_flow_id_is_kept_per_site_and_for_all() -> None:
    acme = Conv("a1", "acme").enter("q1", "q2").lead().enter("end").complete("end")
    globex = [Conv(f"g{i}", "globex").enter("q1") for i in range(3)]
    got = totals(plan(None, c.events)[1] for c in [acme, *globex])
    mine, theirs, every = (
        got[funnel_key("quiz", 1, "acme")],
        got[funnel_key("quiz", 1, "globex")],
        got[funnel_key("quiz", 1)],
    )
    assert mine == Counter(
        {
            "started": 1,
            "entered:q1": 1,
            "entered:q2": 1,
            "entered:end": 1,
            "left:q1": 1,
            "left:q2": 1,
            "edge:q1>q2": 1,
            "edge:q2>end": 1,
            "converted:q1": 1,
            "converted:q2": 1,
            "converted:end": 1,
            "edge_converted:q1>q2": 1,
            "edge_converted:q2>end": 1,
            "leads": 1,
            "completed": 1,
        }
    )
    assert theirs == Counter({"started": 3, "entered:q1": 3})
    assert every == mine + theirs  # the admin's all-sites funnel is the sum of the sites'
    assert got[daily_flow_key("quiz", DAY, "acme")] == Counter(
        {"started": 1, "leads": 1, "completed": 1}
    )
    assert got[daily_flow_key("quiz", DAY, "globex")] == Counter({"started": 3})
    assert got[daily_flow_key("quiz", DAY)] == Counter({"started": 4, "leads": 1, "completed": 1})


def test_a_loop_counts_the_conversation_once_per_node_and_edge_in_every_funnel() -> None:
    events = Conv("c1", "acme").enter("q1", "q2", "q1", "q2", "q1", "q3").lead().enter("q1").events
    want = Counter(
        {
            "started": 1,
            "entered:q1": 1,
            "entered:q2": 1,
            "entered:q3": 1,
            "left:q1": 1,
            "left:q2": 1,
            "left:q3": 1,
            "edge:q1>q2": 1,
            "edge:q2>q1": 1,
            "edge:q1>q3": 1,
            "edge:q3>q1": 1,
            "leads": 1,
            "converted:q1": 1,
            "converted:q2": 1,
            "converted:q3": 1,
            "edge_converted:q1>q2": 1,
            "edge_converted:q2>q1": 1,
            "edge_converted:q1>q3": 1,
            "edge_converted:q3>q1": 1,
        }
    )
    at_once = totals([plan(None, events)[1]])
    in_steps = totals(ws for ws in one_by_one(events) if ws is not None)
    for got in (at_once, in_steps):
        assert got[funnel_key("quiz", 1)] == want
        assert got[funnel_key("quiz", 1, "acme")] == want


def test_a_self_loop_is_one_edge_and_one_entry() -> None:
    """A question whose button leads back to itself (retry) is entered once."""
    events = Conv("c1", "acme").enter("q1", "q1", "q1").events
    got = totals([plan(None, events)[1]])[funnel_key("quiz", 1, "acme")]
    assert (got["entered:q1"], got["edge:q1>q1"], got["left:q1"]) == (1, 1, 1)


async def project(store: InMemoryReadModel, events: list[Event], size: int) -> None:
    """In batches, each by a fresh projector: no cache, every view read back from the store."""
    namespace = await store.current_namespace()
    for i in range(0, len(events), size):
        await Projector(store, namespace, live=True).project(events[i : i + size])


def interleaved(*convs: Conv) -> list[Event]:
    """The conversations' events interleaved, as in a log."""
    queues = [list(c.events) for c in convs]
    out: list[Event] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


def test_the_in_memory_store_keeps_sites_apart_and_loops_once() -> None:
    acme = Conv("a1", "acme").enter("q1", "q2", "q1", "q2").lead()
    acme2 = Conv("a2", "acme").enter("q1", "q1", "q2")
    globex = Conv("g1", "globex").enter("q1", "q2", "q1", "q3")
    events = interleaved(acme, acme2, globex)

    async def run() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        store = InMemoryReadModel()
        await project(store, events, 2)
        await project(store, events[3:9], 3)  # replayed: changes nothing
        return (
            await store.counters(funnel_key("quiz", 1, "acme")),
            await store.counters(funnel_key("quiz", 1, "globex")),
            await store.counters(funnel_key("quiz", 1)),
        )

    mine, theirs, every = asyncio.run(run())
    assert (mine["started"], mine["entered:q1"], mine["entered:q2"], mine["edge:q2>q1"]) == (
        2,
        2,
        2,
        1,
    )
    assert "entered:q3" not in mine  # only globex went there
    assert (theirs["started"], theirs["entered:q1"], theirs["entered:q3"]) == (1, 1, 1)
    assert Counter(every) == Counter(mine) + Counter(theirs)


def test_the_reports_fold_agrees_with_each_sites_funnel() -> None:
    """The funnel report of one site's conversations equals that site's read-model
    funnel; of all conversations, the all-sites funnel (loops included)."""
    convs = [
        Conv("a1", "acme").enter("q1", "q2", "q1", "q3").lead().enter("end").complete("end"),
        Conv("a2", "acme").enter("q1", "q1"),
        Conv("g1", "globex").enter("q1", "q2", "q1", "q2"),
        Conv("g2", "globex").enter("q1", "q3", "end").complete("end"),
    ]
    events = interleaved(*convs)
    got = totals(ws for ws in one_by_one(events) if ws is not None)
    for site in ("acme", "globex", None):
        kept = [e for c in convs if site in (None, c.site) for e in c.events]
        [stats] = fold_funnel([kept], "quiz").values()
        assert stats.counters() == dict(got[funnel_key("quiz", 1, site)]), site
