"""py-spy: sample a process for a few seconds and summarise the top frames.

``py-spy record -f raw`` writes collapsed stacks, one ``frame;frame;... count`` line per
stack (root first). *self* is the share of samples a function was the leaf of (where
the CPU went); *threads*, the share of each thread (the services run on one asyncio
loop in the main thread); *project inclusive*, the share a function of this repository (not of a
library) was anywhere on the stack: which of our code paths the time is spent under.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections import Counter
from pathlib import Path

from bench.kafka.config import ROOT
from bench.kafka.sysstats import Json

TOP = 15
PROJECT_PACKAGES = ("schemas", "services", "gateway", "policy", "projector", "bench")
ENTRY_POINTS = ("app/cli.py", "app/cli_distributed.py")  # under every sample
_LOCATION = re.compile(r"\s*\((?P<file>[^:()]+):\d+\)$")


def available() -> bool:
    return shutil.which("py-spy") is not None


async def record(pid: int, seconds: float, out: Path) -> asyncio.subprocess.Process:
    """Start sampling ``pid`` for ``seconds`` (idle frames excluded) into ``out``."""
    return await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "-p",
        str(pid),
        "-d",
        str(max(1, round(seconds))),
        "-f",
        "raw",
        "--threads",
        "-r",
        "100",
        "-o",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def _short(frame: str) -> tuple[str, bool]:
    """``fn (/path/site-packages/pkg/mod.py:12)`` -> (``fn (pkg/mod.py)``, is it ours)."""
    match = _LOCATION.search(frame)
    if match is None:
        return frame.strip(), False
    path = match.group("file")
    parts = Path(path).parts
    # py-spy shortens paths relative to sys.path: ours start with a package of ours
    ours = (bool(parts) and parts[0] in PROJECT_PACKAGES) or path.startswith(str(ROOT))
    return f"{frame[: match.start()].strip()} ({'/'.join(parts[-2:])})", ours


def _entry(name: str) -> bool:
    return any(name.endswith(f"({'/'.join(Path(e).parts[-2:])})") for e in ENTRY_POINTS)


def summarize(path: Path, top: int = TOP) -> Json:
    threads: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short(f) for f in stack.split(";") if f]
            if frames and frames[0][0].startswith("thread ("):
                threads[frames[0][0].split(": ", 1)[-1]] += count  # "thread (tid): name"
                frames = frames[1:]
            if not frames:
                continue
            total += count
            leaf[frames[-1][0]] += count
            for frame in {name for name, ours in frames if ours and not _entry(name)}:
                inclusive[frame] += count
    if total == 0:
        return {"samples": 0}

    def pct(counter: Counter[str]) -> list[list[object]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "threads_pct": pct(threads),
        "self_pct": pct(leaf),
        "project_inclusive_pct": pct(inclusive),
    }
