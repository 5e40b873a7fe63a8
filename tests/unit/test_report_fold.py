"""The funnel report's fold (projector.report.fold) on hand-built event sequences
(its agreement with the read model's funnel on simulated traffic: tests/integration/
test_larger_logs.py)."""

from __future__ import annotations

from collections.abc import Iterator

from projector.report.fold import FunnelFold, fold_funnel
from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
    event_id,
)
from tests.support.traffic import T0


class Conv:
    """Builds one conversation's events with consecutive seqs."""

    def __init__(self, cid: str, at: float = T0) -> None:
        self.cid, self.at, self.seq = cid, at, 0
        self.events: list[Event] = []

    def _header(self, dt: float) -> dict[str, object]:
        self.seq += 1
        self.at += dt
        cid = self.cid
        return {"conversation_id": cid, "seq": self.seq, "id": event_id(cid, self.seq)} | {
            "at": self.at,
            "command_seq": self.seq,
        }

    def start(
        self, flow: str = "f", version: int = 1, context: VisitorContext | None = None
    ) -> Conv:
        self.events.append(
            ConversationStarted(
                **self._header(0.0),  # type: ignore[arg-type]
                flow_id=flow,
                flow_version=version,
                site_id="acme",
                context=context or VisitorContext(device="mobile", utm_source="google"),
            )
        )
        return self

    def enter(self, *nodes: str) -> Conv:
        for node in nodes:
            self.events.append(
                NodeEntered(**self._header(1.0), node_id=node, kind="question")  # type: ignore[arg-type]
            )
        return self

    def press(self, node: str, button: str) -> Conv:
        self.events.append(ButtonPressed(**self._header(1.0), node_id=node, button_id=button))  # type: ignore[arg-type]
        return self

    def choose(self, node: str, button: str, chosen: str, *candidates: str) -> Conv:
        self.events.append(
            EdgeChosen(
                **self._header(0.0),  # type: ignore[arg-type]
                node_id=node,
                button_id=button,
                candidates=candidates,
                chosen=chosen,
                propensity=1.0 / len(candidates),
                policy_version="uniform",
                seed=1,
            )
        )
        return self

    def lead(self, node: str = "form", after: float = 10.0) -> Conv:
        self.events.append(
            LeadCaptured(
                **self._header(after),  # type: ignore[arg-type]
                node_id=node,
                site_id="acme",
                fields_present=("email",),
                consent=True,
                sealed="x",
            )
        )
        return self

    def reject(self) -> Conv:
        self.events.append(
            CommandRejected(
                **self._header(1.0),  # type: ignore[arg-type]
                command_type="PressButton",
                reason="unknown_button",
                detail="",
                consumed=True,
            )
        )
        return self

    def complete(self, node: str = "end", lead: bool = False) -> Conv:
        self.events.append(
            ConversationCompleted(**self._header(1.0), node_id=node, lead_captured=lead)  # type: ignore[arg-type]
        )
        return self


def batches(events: list[Event], size: int = 3) -> Iterator[list[Event]]:
    for i in range(0, len(events), size):
        yield events[i : i + size]


def test_a_loop_counts_once_per_node_and_edge() -> None:
    """Guards against counting a conversation again each time it loops back."""
    events = Conv("c1").start().enter("a", "b", "a", "b", "c").events
    [stats] = fold_funnel([events], "f").values()
    assert dict(stats.entered) == {"a": 1, "b": 1, "c": 1}
    assert dict(stats.edges) == {("a", "b"): 1, ("b", "a"): 1, ("b", "c"): 1}
    assert dict(stats.left) == {"a": 1, "b": 1}
    assert stats.paths == {("a", "b", "a", "b", "c"): (1, 0)}


def test_drop_off_is_entered_minus_left() -> None:
    one = Conv("c1").start().enter("a", "b").events
    two = Conv("c2").start().enter("a").events
    three = Conv("c3").start().enter("a", "b", "c").complete("c").events
    [stats] = fold_funnel([one + two + three], "f").values()
    assert stats.entered["a"] - stats.left["a"] == 1
    assert stats.entered["b"] - stats.left["b"] == 1
    assert stats.entered["c"] - stats.left.get("c", 0) == 1
    assert (stats.started, stats.completed) == (3, 1)


def test_leads_convert_every_node_and_edge_before_or_after_the_lead() -> None:
    events = Conv("c1").start().enter("a", "form").lead(after=30.0).enter("thanks").events
    events += Conv("c2").start().enter("a").events
    [stats] = fold_funnel([events], "f").values()
    assert stats.leads == 1
    assert dict(stats.converted) == {"a": 1, "form": 1, "thanks": 1}
    assert dict(stats.edges_converted) == {("a", "form"): 1, ("form", "thanks"): 1}
    assert stats.entered["a"] == 2
    assert stats.lead_seconds == (32.0,)  # two NodeEntered (1 s each), then 30 s


def test_decisions_buttons_and_segments_count_each_conversation_once() -> None:
    c1 = Conv("c1").start().enter("q").press("q", "go").choose("q", "go", "x", "x", "y")
    c1.enter("x").press("q", "go").choose("q", "go", "x", "x", "y").lead()
    c2 = Conv("c2").start(context=VisitorContext(device="desktop", utm_medium="cpc"))
    c2.enter("q").press("q", "go").choose("q", "go", "y", "x", "y")
    [stats] = fold_funnel([c1.events + c2.events], "f").values()
    assert dict(stats.decisions) == {("q", "go", "x"): (1, 1), ("q", "go", "y"): (1, 0)}
    assert dict(stats.buttons) == {("q", "go"): (2, 1)}
    assert dict(stats.segments) == {
        ("source", "search"): (1, 1),
        ("device", "mobile"): (1, 1),
        ("source", "paid"): (1, 0),
        ("device", "desktop"): (1, 0),
    }


def test_duplicates_other_flows_and_startless_conversations_are_ignored() -> None:
    c1 = Conv("c1").start().enter("a", "b").lead()
    replayed = c1.events + c1.events[1:]  # at-least-once delivery repeats events
    other = Conv("c2").start(flow="other").enter("a").events
    headless = Conv("c3").start().enter("a").events[1:]  # its start is outside the range
    [stats] = fold_funnel(batches(replayed + other + headless), "f").values()
    assert (stats.started, stats.leads) == (1, 1)
    assert dict(stats.entered) == {"a": 1, "b": 1}


def test_rejections_count_also_after_completion() -> None:
    events = Conv("c1").start().enter("a").reject().complete("a").reject().events
    [stats] = fold_funnel(batches(events, 2), "f").values()
    assert stats.rejected == 2
    assert stats.counters()["rejected"] == 2


def test_versions_are_kept_apart() -> None:
    events = Conv("c1").start(version=1).enter("a").events
    events += Conv("c2").start(version=2).enter("b").events
    by_version = fold_funnel([events], "f")
    assert sorted(by_version) == [1, 2]
    assert dict(by_version[2].entered) == {"b": 1}


def test_completed_conversations_leave_the_open_state() -> None:
    """Guards the memory bound: a completed conversation's path is not kept."""
    fold = FunnelFold("f")
    fold.feed(Conv("c1").start().enter("a").complete("a").events)
    fold.feed(Conv("c2").start().enter("a").events)
    assert fold.open_conversations == 1
