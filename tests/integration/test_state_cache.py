"""The processor's bounded state cache and its spill folder, on real files.

The cache is a mapping whatever the capacity: each test runs the same
operations on a cache that spills and on a plain dict and compares. The folder
is checked against a real process killed with -9.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.conversation.state import ConversationState
from services.processor.state_cache import StateCache
from services.processor.state_dir import PREFIX, StateDir, remove_abandoned


def state(cid: str, seq: int) -> ConversationState:
    return ConversationState(cid, seq=seq, status="active", flow_id="quiz", updated_at=seq)


@pytest.mark.parametrize("capacity", [1, 3, 40])
def test_a_spilling_cache_behaves_as_a_dict(tmp_path: Path, capacity: int) -> None:
    rng = random.Random(capacity)
    cache = StateCache(capacity, tmp_path / "states.sqlite")
    reference: dict[bytes, ConversationState] = {}
    for step in range(2_000):
        key = f"c{rng.randrange(60)}".encode()
        action = rng.random()
        if action < 0.6:
            value = state(key.decode(), step)
            cache[key], reference[key] = value, value
        elif action < 0.8:
            assert cache.pop(key, None) == reference.pop(key, None)
        else:
            assert cache.get(key) == reference.get(key)
            assert (key in cache) == (key in reference)
        assert len(cache) == len(reference)
        assert cache.in_memory <= capacity
    assert sorted(cache) == sorted(reference)
    assert sorted(s.conversation_id for s in cache.states()) == sorted(
        s.conversation_id for s in reference.values()
    )
    assert cache == reference
    assert cache.spilled > 0
    cache.close()
    assert len(cache) == 0 and not (tmp_path / "states.sqlite").exists()


def test_reading_a_spilled_state_leaves_it_on_disk(tmp_path: Path) -> None:
    """Only a write makes a state hot: iterating every state at recovery must not
    push the conversations being served out of memory."""
    cache = StateCache(2, tmp_path / "states.sqlite")
    for i in range(5):
        cache[f"c{i}".encode()] = state(f"c{i}", i)
    hot = list(cache)[: cache.in_memory]
    assert cache[b"c0"].seq == 0 and list(cache)[: cache.in_memory] == hot
    cache[b"c0"] = state("c0", 9)  # written: now hot, and in one place only
    assert b"c0" in list(cache)[: cache.in_memory]
    assert len(cache) == 5 and cache[b"c0"].seq == 9


def test_a_bounded_cache_needs_a_file_and_a_capacity(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="capacity of 1 or more and a file"):
        StateCache(0, tmp_path / "x.sqlite")
    with pytest.raises(ValueError, match="capacity of 1 or more and a file"):
        StateCache(5)


def test_a_new_cache_starts_from_an_empty_file(tmp_path: Path) -> None:
    """A file left by a killed process is never read back as states."""
    path = tmp_path / "states.sqlite"
    old = StateCache(1, path)
    for i in range(3):
        old[f"c{i}".encode()] = state(f"c{i}", i)
    assert path.exists()  # not closed: as after kill -9
    new = StateCache(1, path)
    new[b"x"] = state("x", 1)
    new[b"y"] = state("y", 2)
    assert sorted(new) == [b"x", b"y"]


HOLDER = """
import sys, time
from pathlib import Path
from services.processor.state_dir import StateDir
folder = StateDir(Path(sys.argv[1]))
print(folder.open(), flush=True)
time.sleep(60)
"""


def test_a_start_removes_the_folders_of_killed_processes_only(tmp_path: Path) -> None:
    live = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    killed = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert live.stdout is not None and killed.stdout is not None
        live_path = Path(live.stdout.readline().strip())
        killed_path = Path(killed.stdout.readline().strip())
        (killed_path / "partition-0-1.sqlite").write_bytes(b"x" * 1000)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        assert remove_abandoned(tmp_path) == [killed_path]
        assert live_path.is_dir() and not killed_path.exists()
        mine = StateDir(tmp_path)
        path = mine.open()
        assert path.name.startswith(PREFIX)
        assert mine.file_for(3) != mine.file_for(3)  # a file per cache
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live_path.name, path.name])
        mine.close()
        assert not path.exists() and live_path.is_dir()
    finally:
        for process in (live, killed):
            process.kill()
            process.wait(10)
    # the live holder is gone now: its folder is abandoned
    assert remove_abandoned(tmp_path) == [live_path]
