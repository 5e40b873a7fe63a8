"""After the server stopped: does its event log hold exactly what the visitors did?

A benchmark that loses or duplicates events is not measuring the product, so
the counts the load generator kept are compared with the event log and the
read model, and any difference fails the run.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from bench.embedded.stats import Json

# load-generator count -> (where in the server's record, event type or None)
EXPECTED = (
    ("conversations_started", "event_types", "ConversationStarted"),
    ("presses", "event_types", "ButtonPressed"),
    ("answers", "event_types", "QuestionAnswered"),
    ("leads", "event_types", "LeadCaptured"),
    ("rounds_completed", "event_types", "ConversationCompleted"),
    ("conversations_started", "readmodel_conversations", None),
    ("leads", "readmodel_leads", None),
)

READ_MODELS = (("readmodel_conversations", "rm_conversations"), ("readmodel_leads", "rm_leads"))


def _scalar(conn: sqlite3.Connection, sql: str) -> int:
    value: int = conn.execute(sql).fetchone()[0]
    return value


def _read_only(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))


def log_contents(data_dir: Path) -> Json:
    """What the server's event log and read models (in the same file) hold after it stopped."""
    out: Json = {
        "files_mb": {
            path.name: round(path.stat().st_size / 1e6, 2)
            for path in sorted(data_dir.glob("*.db*"))
        }
    }
    events_db = data_dir / "events.db"
    if not events_db.exists():
        return out
    with _read_only(events_db) as conn:
        out["events"] = _scalar(conn, "SELECT COUNT(*) FROM events")
        out["event_types"] = dict(
            conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type").fetchall()
        )
        out["conversations_in_log"] = _scalar(
            conn, "SELECT COUNT(DISTINCT conversation_id) FROM events"
        )
        with contextlib.suppress(sqlite3.Error):  # the current namespace's rows
            current = "SELECT value FROM rm_meta WHERE key = 'current'"
            for key, table in READ_MODELS:
                out[key] = _scalar(conn, f"SELECT COUNT(*) FROM {table} WHERE ns = ({current})")
    return out


def mismatches(counted: dict[str, int], contents: Json) -> list[str]:
    """Each count the server's record disagrees with, as a readable line."""
    out = []
    for ours, where, event_type in EXPECTED:
        held = contents.get(where)
        if event_type is not None:
            held = (held or {}).get(event_type, 0)
        if held != counted[ours]:
            label = where if event_type is None else f"{event_type} events"
            out.append(f"{label}: {held} in the server, {counted[ours]} {ours} counted")
    return out
