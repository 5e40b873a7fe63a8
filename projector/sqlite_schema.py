"""The embedded mode's read-model tables in SQLite: the DDL, applied with the
event log's own (:class:`~projector.sqlite_store.SqliteReadModel` adds it to
the log's schema, so both live in one file and one transaction).

Tables (every row carries its namespace ``ns``; ``rm_meta`` holds the
``current`` pointer, the namespace ``serial`` and each namespace's counter
layout, ``layout:{ns}``: :data:`projector.write_set.LAYOUT_VERSION`; see
:mod:`projector.sqlite_namespaces`)::

    rm_meta(key, value)
    rm_frontier(ns, part, next_offset)
    rm_conversations(ns, conversation_id, last_seq, fields)   fields: orjson of view_fields
    rm_transcript_chunks(position, ns, conversation_id, last_seq, entries)
                          entries: a JSON array of the plan's entries of one write set
    rm_leads(ns, conversation_id, site_id, captured_at, erased, fields)
    rm_counters(ns, key, field, value)
    rm_counter_deltas(position, ns, body)  increments not folded yet: projector/sqlite_counters.py

A transcript is kept as chunks: one row per write set (the entries one append
adds to a conversation, in seq order), appended at the end of the table, with a
small index by (ns, conversation, last seq) to find them. One row per entry,
keyed by the conversation, was inserted mid-tree and split its 1 KiB pages
over and over: about 5 of the ~21 pages a command wrote. ``rm_transcript``
(one row per entry) is what namespaces of earlier versions hold.
"""

from __future__ import annotations

from projector import sqlite_counters as counters

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS rm_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rm_frontier (
    ns TEXT NOT NULL,
    part TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (ns, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rm_conversations (
    ns TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    fields BLOB NOT NULL,
    PRIMARY KEY (ns, conversation_id)
);
CREATE TABLE IF NOT EXISTS rm_transcript (
    ns TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry BLOB NOT NULL,
    PRIMARY KEY (ns, conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rm_transcript_chunks (
    position INTEGER PRIMARY KEY,
    ns TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    entries BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rm_transcript_by_conversation
    ON rm_transcript_chunks (ns, conversation_id, last_seq);
CREATE TABLE IF NOT EXISTS rm_leads (
    ns TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    site_id TEXT NOT NULL,
    captured_at REAL NOT NULL,
    erased INTEGER NOT NULL DEFAULT 0,
    fields BLOB NOT NULL,
    PRIMARY KEY (ns, conversation_id)
);
CREATE INDEX IF NOT EXISTS rm_leads_by_site
    ON rm_leads (ns, site_id, captured_at DESC, conversation_id DESC);
CREATE TABLE IF NOT EXISTS rm_counters (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (ns, key, field)
) WITHOUT ROWID;
"""
    + counters.SCHEMA
)

# The read models of earlier versions (one unnamespaced view per conversation).
LEGACY_TABLES = ("conversations", "leads")
