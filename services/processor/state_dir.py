"""Where a processor's spill files live (services/processor/state_cache.py).

Each processor process makes its own folder under the configured directory
(``LEADFLOW_PROCESSOR_STATE_DIR``, else the system's temporary directory) and
holds an exclusive ``flock`` on a lock file in it while it runs. A process
killed with -9 cannot remove its folder, so each start removes the folders
whose lock nobody holds: processors sharing a directory (several on one host,
or a restarted container keeping its volume) never remove a live one's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

PREFIX = "leadflow-states-"
LOCK = "lock"


class StateDir:
    """A processor's own folder of spill files; :meth:`close` removes it."""

    def __init__(self, parent: Path | None = None) -> None:
        self.parent = Path(parent or tempfile.gettempdir())
        self.path: Path | None = None
        self._lock: IO[bytes] | None = None
        self._serial = itertools.count(1)

    def open(self) -> Path:
        self.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(self.parent)
        # locked before it is visible under PREFIX: another start's clean-up
        # cannot take it for abandoned in between (the lock follows the inode)
        making = Path(tempfile.mkdtemp(prefix=".making-", dir=self.parent))
        lock = (making / LOCK).open("wb")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.parent / f"{PREFIX}{making.name.removeprefix('.making-')}"
        making.rename(path)
        self.path, self._lock = path, lock
        return path

    def file_for(self, partition: int) -> Path:
        """A new file name for a partition's cache: a partition given back and
        taken again while its old worker still stops gets a file of its own."""
        if self.path is None:
            self.open()
        assert self.path is not None
        return self.path / f"partition-{partition}-{next(self._serial)}.sqlite"

    def close(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def remove_abandoned(parent: Path) -> list[Path]:
    """Remove the state folders under ``parent`` that no live process holds."""
    removed = []
    for folder in sorted(parent.glob(f"{PREFIX}*")):
        lock_path = folder / LOCK
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            continue  # not one of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live processor's
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
