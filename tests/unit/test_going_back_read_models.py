"""Going back in the read models: the projector's plan and the report's fold count
it alike (``went_back:N``, the node gone back from as left, no edge backwards, a
re-entered node once), the withdrawn answers leave the view and the buttons'
tallies, and the export fills its columns."""

from __future__ import annotations

from projector.export.columns import column_names
from projector.export.raw_columns import to_columns
from projector.plan import plan
from projector.report.fold import fold_funnel
from projector.write_set import funnel_key
from schemas.commands import Command, GoBack, SubmitLead
from schemas.events import Event, WentBack
from tests.unit.test_decider_v2 import CID, Conversation, FixedPolicy, answer, press, start


def back(seq: int, node: str) -> GoBack:
    return GoBack(conversation_id=CID, seq=seq, at=100.0 + seq, node_id=node)


def played(*commands: Command, device: str = "mobile") -> list[Event]:
    c = Conversation(FixedPolicy("contact"))
    c.send(start(device=device))
    for command in commands:
        c.send(command)
    return c.events


def lead(seq: int) -> SubmitLead:
    fields = {"email": "eve@example.com", "consent": "yes"}
    return SubmitLead(
        conversation_id=CID, seq=seq, at=100.0 + seq, node_id="contact", fields=fields
    )


CHANGED_MIND = (
    answer(2, "ask_name", "Eve"),
    press(3, "roof", "pitched"),  # mobile: a decision, contact chosen
    back(4, "contact"),
    press(5, "roof", "flat"),
    answer(6, "size", "150"),  # big_flat, then contact
    back(7, "contact"),
    answer(8, "size", "20"),  # small_flat, then contact
    lead(9),
)


def counters(events: list[Event]) -> dict[str, int]:
    _, writes = plan(None, events)
    assert writes is not None
    key = funnel_key("roofer", 1)
    return {i.field: i.delta for i in writes.increments if i.key == key}


def test_the_plan_counts_a_go_back_once_per_conversation_and_draws_no_edge_back() -> None:
    events = played(*CHANGED_MIND)
    got = counters(events)
    assert got["went_back:roof"] == 1 and got["went_back:size"] == 1
    assert got["entered:roof"] == 1 and got["entered:size"] == 1
    assert got["left:contact"] == 1  # gone back from, then left for good by the lead
    edges = {name for name in got if name.startswith("edge:")}
    assert not edges & {"edge:contact>roof", "edge:contact>size", "edge:size>roof"}
    assert {
        "edge:roof>contact",
        "edge:roof>size",
        "edge:size>big_flat",
        "edge:size>small_flat",
    } <= set(got)
    view, _ = plan(None, events)
    assert view is not None
    assert view.answers == (("ask_name", "answered"), ("roof", "flat"), ("size", "answered"))
    assert view.went_back == ("roof", "size") and view.lead_captured


def test_the_report_fold_agrees_with_the_plan() -> None:
    for commands in (CHANGED_MIND, CHANGED_MIND[:3], CHANGED_MIND[:6]):
        events = played(*commands)
        (stats,) = fold_funnel([events], "roofer").values()
        assert stats.counters() == counters(events), commands


def test_the_fold_keeps_the_answer_kept_and_counts_a_withdrawn_decision_without_a_lead() -> None:
    (stats,) = fold_funnel([played(*CHANGED_MIND)], "roofer").values()
    assert stats.buttons == {("roof", "flat"): (1, 1)}
    assert stats.decisions == {("roof", "pitched", "contact"): (1, 0)}
    assert stats.went_back == {"roof": 1, "size": 1}


def test_the_transcript_notes_the_go_back() -> None:
    _, writes = plan(None, played(*CHANGED_MIND[:3]))
    assert writes is not None
    assert any(
        b'"kind":"back"' in line and b'"from_node":"contact"' in line for line in writes.transcript
    )


def test_the_export_fills_a_go_back_row() -> None:
    events = played(*CHANGED_MIND[:3])
    cols = to_columns(events, {}, include_pii=False)
    assert list(cols) == list(column_names(False))
    (row,) = [i for i, t in enumerate(cols["type"]) if t == "WentBack"]
    went = next(e for e in events if isinstance(e, WentBack))
    assert (cols["node_id"][row], cols["from_node"][row]) == ("roof", "contact")
    assert cols["withdrawn_seq"][row] == went.withdrawn_seq
