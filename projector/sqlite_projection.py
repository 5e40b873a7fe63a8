"""The embedded mode's projection in SQLite: events planned on the stored views
and written, with their seq check, inside the caller's transaction.

:func:`project_in_transaction` is the event log's projection hook: it runs
inside each append's transaction (see SqliteEventLog), reads the current
namespace there, plans on the stored views (:func:`projector.plan.plan`) and
applies the write sets with the same seq check as
:meth:`SqliteReadModel.apply <projector.sqlite_store.SqliteReadModel.apply>`.
The views are therefore exactly as current as the log, even after kill -9, and
a replayed event changes nothing. The adapter and the rebuild's catch-up write
through the same functions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import orjson

from projector import sqlite_counters as counters
from projector.engine import group_by_conversation
from projector.plan import plan
from projector.sqlite_namespaces import ensure_current
from projector.store import Outcome
from projector.views import (
    ConversationView,
    LeadView,
    lead_fields,
    lead_from_fields,
    view_from_fields,
)
from projector.write_set import Increment, WriteSet
from schemas.events import ConversationStarted, Event

IN_CHUNK = 500  # ids per ``IN (...)``, well under SQLite's variable limit


def load_views(
    conn: sqlite3.Connection, namespace: str, conversation_ids: Iterable[str]
) -> dict[str, ConversationView]:
    """The stored views of those of ``conversation_ids`` that have one."""
    ids = list(dict.fromkeys(conversation_ids))
    views: dict[str, ConversationView] = {}
    for i in range(0, len(ids), IN_CHUNK):
        chunk = ids[i : i + IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        cur = conn.execute(
            "SELECT conversation_id, fields FROM rm_conversations"
            f" WHERE ns = ? AND conversation_id IN ({marks})",
            (namespace, *chunk),
        )
        for cid, fields in cur:
            views[cid] = view_from_fields(orjson.loads(fields))
    return views


def apply_write_sets(
    conn: sqlite3.Connection,
    namespace: str,
    write_sets: Sequence[WriteSet],
    held: Mapping[str, int] | None = None,
) -> list[Outcome]:
    """Each write set with its seq check, inside the caller's transaction: written
    only if the conversation holds ``base_seq``; DUPLICATE if it holds ``new_seq``
    already, CONFLICT if it holds something else. ``held``: the seqs of the
    conversations as just read in this transaction (saves reading them again)."""
    outcomes = []
    increments: list[Increment] = []
    for ws in write_sets:
        seq = None if held is None else held.get(ws.conversation_id)
        if seq is None:
            row = conn.execute(
                "SELECT last_seq FROM rm_conversations WHERE ns = ? AND conversation_id = ?",
                (namespace, ws.conversation_id),
            ).fetchone()
            seq = 0 if row is None else int(row[0])
        if seq >= ws.new_seq:
            outcomes.append(Outcome.DUPLICATE)
            continue
        if seq != ws.base_seq:
            outcomes.append(Outcome.CONFLICT)
            continue
        _write(conn, namespace, ws)
        increments.extend(ws.increments)
        outcomes.append(Outcome.APPLIED)
    counters.add_increments(conn, namespace, increments)
    return outcomes


def _write(conn: sqlite3.Connection, namespace: str, ws: WriteSet) -> None:
    cid = ws.conversation_id
    conn.execute(
        "INSERT INTO rm_conversations (ns, conversation_id, last_seq, fields) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (ns, conversation_id)"
        " DO UPDATE SET last_seq = excluded.last_seq, fields = excluded.fields",
        (namespace, cid, int(ws.fields.get("last_seq", "0")), orjson.dumps(ws.fields)),
    )
    if ws.transcript:
        conn.execute(
            "INSERT INTO rm_transcript_chunks (ns, conversation_id, last_seq, entries)"
            " VALUES (?, ?, ?, ?)",
            (namespace, cid, _last_seq(ws), b"[" + b",".join(ws.transcript) + b"]"),
        )
    if ws.lead is not None:
        _put_lead(conn, namespace, ws.lead)


def _last_seq(ws: WriteSet) -> int:
    """The seq of the write set's last transcript entry (parsed again only when
    the write set does not carry the seqs)."""
    if len(ws.transcript_seqs) == len(ws.transcript):
        return max(ws.transcript_seqs)
    return max(int(orjson.loads(entry)["seq"]) for entry in ws.transcript)


def _put_lead(conn: sqlite3.Connection, namespace: str, lead: LeadView) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO rm_leads"
        " (ns, conversation_id, site_id, captured_at, erased, fields) VALUES (?, ?, ?, ?, ?, ?)",
        (
            namespace,
            lead.conversation_id,
            lead.site_id,
            lead.captured_at,
            int(lead.erased),
            orjson.dumps(lead_fields(lead)),
        ),
    )


def lead_of(conn: sqlite3.Connection, namespace: str, cid: str) -> LeadView | None:
    """The lead of conversation ``cid``; None when it left none."""
    row = conn.execute(
        "SELECT fields FROM rm_leads WHERE ns = ? AND conversation_id = ?", (namespace, cid)
    ).fetchone()
    return None if row is None else lead_from_fields(orjson.loads(row[0]))


def erase(conn: sqlite3.Connection, namespace: str, cid: str) -> bool:
    """Mark the lead of ``cid`` erased, its sealed blob blanked; False when there is none."""
    lead = lead_of(conn, namespace, cid)
    if lead is None:
        return False
    _put_lead(conn, namespace, replace(lead, sealed="", erased=True))
    return True


def project_into(conn: sqlite3.Connection, namespace: str, events: Iterable[Event]) -> int:
    """Plan ``events`` on the views stored in ``namespace`` and apply them, in the
    caller's transaction; returns how many conversations changed."""
    groups = group_by_conversation(events)
    if not groups:
        return 0
    views = load_views(conn, namespace, groups)
    write_sets = []
    for cid, group in groups.items():
        _, write_set = plan(views.get(cid), group)
        if write_set is not None:
            write_sets.append(write_set)
    # The views were read in this transaction: nothing can conflict.
    held = {cid: views[cid].last_seq if cid in views else 0 for cid in groups}
    outcomes = apply_write_sets(conn, namespace, write_sets, held)
    return sum(1 for outcome in outcomes if outcome is Outcome.APPLIED)


def project_in_transaction(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """The event log's projection hook: ``events`` (just appended, or appended
    again) into the current namespace, inside the append's transaction."""
    project_into(conn, ensure_current(conn), events)


def started_since(event: Event, since: float | None) -> bool:
    """False for the start of a conversation before ``since``: plan then skips
    the rest of that conversation too (its view never exists)."""
    return since is None or not (isinstance(event, ConversationStarted) and event.at < since)
