"""Which tables the pages of a SQLite WAL belong to, per commit.

    python -m bench.wal_pages DATA_DIR/events.db   # a copy: db and its -wal, taken together

Reads the WAL's frame headers (page number; a commit frame carries the database
size), maps each page to its table or index with SQLite's ``dbstat`` (on a copy of
the pair, so the file given is never changed) and prints the frames per commit by
table and page type. A page's owner is the one at the time of reading: pages freed
and reused meanwhile may show under another table. Take the copy while the WAL
within a checkpoint interval (services/embedded/sqlite_checkpointer.py): the WAL
holds the commits since the last checkpoint let it restart, a few seconds' worth.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import struct
import tempfile
from collections import Counter
from pathlib import Path

HEADER = 32
FRAME_HEADER = 24


def commits_of(wal: bytes) -> list[list[int]]:
    """The page numbers written by each commit since the WAL last restarted, in
    order (frames of an earlier cycle carry other salts: they end the scan)."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    commits: list[list[int]] = []
    current: list[int] = []
    offset = HEADER
    while offset + FRAME_HEADER + page_size <= len(wal):
        if wal[offset + 8 : offset + 16] != salts:
            break
        page, size_after_commit = struct.unpack(">II", wal[offset : offset + 8])
        current.append(page)
        if size_after_commit:
            commits.append(current)
            current = []
        offset += FRAME_HEADER + page_size
    return commits


def owners(path: Path) -> dict[int, tuple[str, str]]:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy.db"
        shutil.copyfile(path, copy)
        shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        conn = sqlite3.connect(copy)
        try:
            rows = conn.execute("SELECT pageno, name, pagetype FROM dbstat").fetchall()
        finally:
            conn.close()
    return {int(page): (str(name), str(kind)) for page, name, kind in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", type=Path, help="a database file with its -wal beside it")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    wal = Path(f"{args.db}-wal")
    if not wal.is_file():
        raise SystemExit(f"{wal} does not exist: copy the database and its WAL together")
    commits = commits_of(wal.read_bytes())
    if not commits:
        raise SystemExit(f"{args.db}-wal holds no commit")
    owner = owners(args.db)
    by_owner = Counter(owner.get(page, ("(freed)", "")) for pages in commits for page in pages)
    frames = sum(len(pages) for pages in commits)
    print(f"{len(commits)} commits, {frames} frames, {frames / len(commits):.2f} per commit")
    for (name, kind), count in by_owner.most_common(args.top):
        print(f"{count / len(commits):7.2f}  {name} ({kind})")


if __name__ == "__main__":
    main()
