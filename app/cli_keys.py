"""``leadflow keys backup|restore``: the embedded mode's conversation keys (``keys.db``).

Every lead is sealed with its conversation's key; without ``keys.db`` no lead opens
again, so it needs backups of its own (the event log's copies never carry it). Both
commands use SQLite's online backup API (``sqlite3.Connection.backup``), which copies
a consistent snapshot of a live WAL database page by page: never a file copy, which
can miss the pages still in ``keys.db-wal``.

* ``backup --out FILE``: a snapshot of ``keys.db`` while ``leadflow serve`` runs,
  written beside ``FILE`` and renamed onto it (mode 0600: it holds every key).
* ``restore FILE``: stop ``leadflow serve`` first. Replaces ``keys.db`` with the
  snapshot, then erases again every conversation the read models mark erased (an
  erasure after the backup was taken must not come back with it).

Neither overwrites an existing file without ``--force``. docs/runbook.md, "Backing
up the conversation keys".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
from pathlib import Path

from app.cli_errors import CliError

KEYS_TABLE = "conversation_keys"


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="back up or restore the conversation keys (keys.db)")
    commands = keys.add_subparsers(dest="keys_command", required=True)
    data_dir = os.environ.get("LEADFLOW_DATA_DIR", ".leadflow")
    backup = commands.add_parser("backup", help="an online snapshot of keys.db into a file")
    backup.add_argument("--out", required=True, help="the backup file to write")
    restore = commands.add_parser("restore", help="replace keys.db with a backup (server stopped)")
    restore.add_argument("file", help="a file written by leadflow keys backup")
    for command in (backup, restore):
        command.add_argument("--data-dir", default=data_dir, help="LEADFLOW_DATA_DIR")
        command.add_argument("--force", action="store_true", help="overwrite an existing file")


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    return sqlite3.connect(path)


def _copy(source: Path, target: Path) -> int:
    """SQLite's online backup of ``source`` into a new file ``target``; returns the
    number of keys copied."""
    src = _connect(source, read_only=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dst = _connect(target, read_only=False)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            (count,) = dst.execute(f"SELECT count(*) FROM {KEYS_TABLE}").fetchone()
            (check,) = dst.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise CliError(f"the copy of {source} fails SQLite's check: {check}", 1)
            return int(count)
        finally:
            dst.close()
    finally:
        src.close()


def _check_keys_file(path: Path) -> None:
    try:
        conn = _connect(path, read_only=True)
        try:
            conn.execute(f"SELECT count(*) FROM {KEYS_TABLE}").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        raise CliError(
            f"{path} is not a backup of conversation keys; name a file written by"
            " leadflow keys backup"
        ) from None


def _erased_conversations(events_db: Path) -> list[str]:
    """The conversations the read models mark erased (none when there are none yet)."""
    if not events_db.exists():
        return []
    conn = _connect(events_db, read_only=True)
    try:
        rows = conn.execute("SELECT DISTINCT conversation_id FROM rm_leads WHERE erased = 1")
        return [str(cid) for (cid,) in rows]
    except sqlite3.OperationalError:  # read models of an earlier version: no rm_leads
        return []
    finally:
        conn.close()


def _temporary(target: Path) -> Path:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    return tmp


def backup(data_dir: Path, out: Path, force: bool) -> int:
    from app.embedded import KEYS_DB

    source = data_dir / KEYS_DB
    if not source.exists():
        raise CliError(
            f"no {KEYS_DB} in {data_dir}; pass --data-dir DIR (or set LEADFLOW_DATA_DIR)"
            " naming the data directory of leadflow serve"
        )
    if out.exists() and not force:
        raise CliError(f"{out} exists; pass --force to overwrite it, or another --out")
    if not out.parent.is_dir():
        raise CliError(f"no directory {out.parent} for the backup; create it first")
    tmp = _temporary(out)
    try:
        count = _copy(source, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"backed up {count} conversation keys to {out}")
    return 0


def restore(data_dir: Path, file: Path, force: bool) -> int:
    from app.embedded import EVENTS_DB, KEYS_DB

    if not file.is_file():
        raise CliError(f"no backup file {file}; name a file written by leadflow keys backup")
    _check_keys_file(file)
    target = data_dir / KEYS_DB
    if target.exists() and not force:
        raise CliError(
            f"{target} exists; stop leadflow serve and pass --force to replace it with {file}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        count = _copy(file, tmp)
        erased = _erased_conversations(data_dir / EVENTS_DB)
        conn = _connect(tmp, read_only=False)
        try:
            with conn:
                gone = sum(
                    conn.execute(
                        f"DELETE FROM {KEYS_TABLE} WHERE conversation_id = ?", (cid,)
                    ).rowcount
                    for cid in erased
                )
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):  # the old database's, never the snapshot's
            with contextlib.suppress(FileNotFoundError):
                target.with_name(target.name + suffix).unlink()
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    print(
        f"restored {count - gone} conversation keys from {file} into {target}"
        f" ({gone} erased since the backup, erased again)"
    )
    return 0


def main(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if args.keys_command == "backup":
        return backup(data_dir, Path(args.out), args.force)
    return restore(data_dir, Path(args.file), args.force)
