"""The writer of each `leadflow serve` file never checkpoints in its commits: a
thread beside it copies the WAL back into the file every few seconds
(services/embedded/sqlite_checkpointer.py), and closing leaves no WAL."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.embedded import sqlite_checkpointer
from services.embedded.sqlite_eventlog import SqliteEventLog
from tests.support.traffic import simulate


def events_in_the_file_alone(path: Path, scratch: Path) -> int:
    """The events the database file holds without its WAL (a copy of the file
    only: what a checkpoint has moved there)."""
    copy = scratch / "file-alone.db"
    for stale in scratch.glob("file-alone.db*"):
        stale.unlink()
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # not even the schema reached the file
        return 0
    finally:
        conn.close()


def wal_pages(path: Path) -> int:
    return (path.with_name(path.name + "-wal").stat().st_size - 32) // (1024 + 24)


async def append_one_by_one(log: SqliteEventLog, conversations: int) -> int:
    traffic = await simulate(conversations, seed=3)
    for event in traffic.events:
        await log.append([event])
    return len(traffic.events)


class Files:
    """An event log at ``tmp_path`` and a scratch folder for copies of its file."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"
        self.scratch = tmp_path / "scratch"
        self.scratch.mkdir()
        self.log = SqliteEventLog(self.path)

    def events_in_the_file_alone(self) -> int:
        return events_in_the_file_alone(self.path, self.scratch)


@contextmanager
def files_checkpointed_every(
    seconds: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Files]:
    """The log started with this checkpoint interval; closed at the end (again)."""
    monkeypatch.setattr(sqlite_checkpointer, "CHECKPOINT_SECONDS", seconds)
    files = Files(tmp_path)
    files.log.start()
    try:
        yield files
    finally:
        files.log.close()


async def test_the_writer_does_not_checkpoint_at_sqlite_s_default_of_1000_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with files_checkpointed_every(3600.0, tmp_path, monkeypatch) as files:
        appended = await append_one_by_one(files.log, 60)
        assert wal_pages(files.path) > 1_000  # past SQLite's automatic checkpoint
        assert files.events_in_the_file_alone() == 0
        assert appended > 0


async def test_the_checkpointer_moves_every_commit_into_the_file_within_its_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with files_checkpointed_every(0.05, tmp_path, monkeypatch) as files:
        appended = await append_one_by_one(files.log, 5)
        for _ in range(200):
            if files.events_in_the_file_alone() == appended:
                break
            await asyncio.sleep(0.05)
        assert files.events_in_the_file_alone() == appended


async def test_closing_checkpoints_everything_and_removes_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with files_checkpointed_every(3600.0, tmp_path, monkeypatch) as files:
        appended = await append_one_by_one(files.log, 5)
        files.log.close()
        assert not files.path.with_name("events.db-wal").exists()
        assert files.events_in_the_file_alone() == appended


def test_a_failed_checkpoint_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = sqlite3.connect(tmp_path / "events.db")
    conn.close()  # a closed connection: every call fails
    sqlite_checkpointer.checkpoint(conn)
    assert "checkpoint failed" in caplog.text
