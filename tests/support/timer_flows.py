"""A flow with durable timers for integration and e2e tests: an idle nudge after
5 s (the shortest allowed) and abandonment after 10 s."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from schemas.events import Event, decode_event

NUDGE_TEXT = "Still there? Take your time."
NUDGER_YAML = f"""\
id: nudger
version: 1
title: Nudges
start: hello
timers:
  idle: {{after: 5, message: "{NUDGE_TEXT}"}}
  abandon_after: 10
nodes:
  - {{id: hello, kind: message, text: Hi!, next: colour}}
  - id: colour
    kind: question
    text: Red or blue?
    buttons:
      - {{id: red, label: Red, next: done}}
      - {{id: blue, label: Blue, next: done}}
  - {{id: done, kind: end, text: Thanks!}}
"""


def write_flows(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "nudger.yaml").write_text(NUDGER_YAML, "utf-8")
    return directory


def logged_events(events_db: Path, conversation_id: str) -> list[Event]:
    """A conversation's events in the embedded server's SQLite log."""
    with sqlite3.connect(f"file:{events_db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT body FROM events WHERE conversation_id = ? ORDER BY seq", (conversation_id,)
        ).fetchall()
    return [decode_event(body) for (body,) in rows]
