"""Which flow and site ids exist, for commands that take one (``export``, ``report
funnel``, ``policy evaluate``, ``leads``): a mistyped id is an error naming the
ids there are, not an empty result that looks like a quiet week.

An id exists when the configuration names it (the flow files, the sites file)
or the log holds a conversation of it. The embedded SQLite log answers
exactly: its read models first (an index lookup), else a scan of its
``ConversationStarted`` rows (only for an id the rest does not know). The Kafka
topic cannot be asked cheaply, so there an id outside the configuration is
checked after the command has read the topic (:meth:`IdCheck.after`).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from app.cli_errors import CliError, listing
from projector import sqlite_counters as counters

Kind = Literal["flow", "site"]
EVENTS_DB = "events.db"


def configured_flows(flows_dir: str | None = None) -> tuple[set[str], str]:
    """The flow ids of the flow files (``flows_dir``, else LEADFLOW_FLOWS_DIR, else
    the examples) and where they are; none when they cannot be loaded."""
    from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

    directory = Path(flows_dir or os.environ.get("LEADFLOW_FLOWS_DIR") or EXAMPLE_FLOWS_DIR)
    try:
        return set(FlowCatalog.from_directory(directory).ids()), f"the flow files in {directory}"
    except Exception:  # unreadable or invalid flow files: only the log can tell
        return set(), f"the flow files in {directory}"


def configured_sites() -> set[str]:
    """The site ids of LEADFLOW_SITES_FILE (the ``demo`` site without one)."""
    from services.sites import load_sites

    raw = os.environ.get("LEADFLOW_SITES_FILE")
    try:
        return set(load_sites(Path(raw) if raw else None))
    except Exception:
        return set()


def _read_only(data_dir: Path) -> sqlite3.Connection | None:
    path = data_dir / EVENTS_DB
    if not path.is_file():
        return None
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _in_read_models(conn: sqlite3.Connection, kind: Kind, wanted: str) -> bool:
    """Whether the current read models count a conversation of ``wanted``: one
    lookup of the counters' primary key (ns, key, field), and the increments
    not folded yet."""
    try:
        row = conn.execute("SELECT value FROM rm_meta WHERE key = 'current'").fetchone()
        if row is None:
            return False
        prefix = f"funnel:{wanted}:" if kind == "flow" else f"daily:site:{wanted}:"
        # ';' sorts right after ':'
        return counters.has_key_between(conn, row[0], prefix, prefix[:-1] + ";")
    except sqlite3.DatabaseError:  # no read models in this file (yet)
        return False


def logged_ids(conn: sqlite3.Connection) -> dict[Kind, set[str]]:
    """Every flow and site id of a conversation started in the log (a scan)."""
    found: dict[Kind, set[str]] = {"flow": set(), "site": set()}
    try:
        rows = conn.execute("SELECT body FROM events WHERE type = 'ConversationStarted'")
        for (body,) in rows:
            try:
                obj = orjson.loads(body)
                found["flow"].add(str(obj["flow_id"]))
                found["site"].add(str(obj["site_id"]))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # the command itself reports an unreadable record
    except sqlite3.DatabaseError:
        pass
    return found


@dataclass
class IdCheck:
    """The ids a command was given, checked against what exists."""

    flow: str | None
    site: str | None
    flows_dir: str | None = None
    unsure: list[Kind] = field(default_factory=list)
    where_config: str = ""

    def before(self, data_dir: Path | None) -> None:
        """Raise :class:`CliError` for an id that exists nowhere. ``data_dir``: the
        SQLite log's directory, or None for the Kafka topic (then an id outside
        the configuration stays :attr:`unsure` until :meth:`after`)."""
        flows, self.where_config = configured_flows(self.flows_dir)
        known: dict[Kind, set[str]] = {"flow": flows, "site": configured_sites()}
        wanted: dict[Kind, str | None] = {"flow": self.flow, "site": self.site}
        missing = [k for k, v in wanted.items() if v is not None and v not in known[k]]
        if not missing:
            return
        if data_dir is None:
            self.unsure = missing
            return
        conn = _read_only(data_dir)
        if conn is None:
            return  # no log: the command says so itself
        try:
            missing = [k for k in missing if not _in_read_models(conn, k, str(wanted[k]))]
            if not missing:
                return
            logged = logged_ids(conn)
        finally:
            conn.close()
        for kind in missing:
            if wanted[kind] not in logged[kind]:
                raise self._unknown(kind, str(wanted[kind]), known[kind] | logged[kind], "the log")

    def after(self, conversations: int) -> None:
        """After reading the Kafka topic: an id outside the configuration that
        selected no conversation is unknown."""
        if conversations or not self.unsure:
            return
        kind = self.unsure[0]
        wanted = self.flow if kind == "flow" else self.site
        known = configured_flows(self.flows_dir)[0] if kind == "flow" else configured_sites()
        raise self._unknown(kind, str(wanted), known, "the Kafka events topic")

    def _unknown(self, kind: Kind, wanted: str, known: set[str], where: str) -> CliError:
        config = self.where_config if kind == "flow" else "the sites file"
        option = "--flow" if kind == "flow" else "--site"
        return CliError(
            f"no {kind} {wanted!r} in {where} or {config}; known {kind}s: {listing(known)}"
            f" (check {option})"
        )


def check_site_of_leads(data_dir: Path, site: str) -> None:
    """``leadflow leads SITE``: the site must be configured or in the log."""
    IdCheck(flow=None, site=site).before(data_dir)
