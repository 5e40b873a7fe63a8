"""The verifier's summary as people and scripts read it."""

from __future__ import annotations

from app.verify.model import ConversationResult, Divergence, FieldDiff, Summary
from app.verify.report import summary_json, summary_text


def diverged(cid: str) -> ConversationResult:
    divergence = Divergence(
        conversation_id=cid,
        kind="differs",
        seq=5,
        event_id="e-5",
        type="EdgeChosen",
        command_seq=2,
        where="events position 12",
        fields=(FieldDiff("chosen", "bill", "roof"),),
    )
    return ConversationResult(cid, "diverged", 9, 1, divergence)


def test_the_summary_counts_everything_and_lists_at_most_the_limit() -> None:
    """--max-divergences bounds the list, never the counts."""
    summary = Summary(max_divergences=1)
    summary.add(ConversationResult("a", "identical", 10, 2))
    summary.add(ConversationResult("b", "identical_without_lead_details", 7, 0))
    summary.add(ConversationResult("c", "unverifiable", 4, 0, None, "commands past retention"))
    summary.add(diverged("d"))
    summary.add(diverged("e"))
    assert summary_text(summary).splitlines() == [
        "verified 4 conversations (35 events, 4 decisions): 2 diverged",
        "  1 of them without lead details (key erased)",
        "unverifiable: 1 conversation: commands past retention",
        "first divergence in conversation d at event seq 5 (id e-5, EdgeChosen, command 2,"
        " events position 12): the replayed event differs from the logged one",
        '  chosen: logged "bill", replayed "roof"',
        "... and 1 more diverged conversation",
    ]
    data = summary_json(summary)
    assert (data["identical"], data["conversations"], data["verified"], data["diverged"]) == (
        False,
        4,
        2,
        2,
    )
    assert data["unverifiable"] == {"commands past retention": 1}
    assert [d["conversation_id"] for d in data["divergences"]] == ["d"]


def test_an_identical_log_says_so_in_one_line() -> None:
    summary = Summary()
    summary.add(ConversationResult("a", "identical", 3, 0))
    assert summary_text(summary) == "verified 1 conversation (3 events, 0 decisions): identical"
