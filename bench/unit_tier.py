"""How long the unit tier takes, next to the floor pytest itself sets.

    python -m bench.unit_tier [--runs 5] [--uncached-runs 3] [--floor-tests 500]
                              [--out bench/results/unit_tier.json]

After one warm-up run, runs ``python -m pytest tests/unit -q`` in a subprocess
``--runs`` times (and ``--collect-only`` as often), each time reading pytest's
own reported time from its last line, the wall time of the subprocess and its
CPU time (user + system, from the rusage of children). Then ``--uncached-runs``
runs with ``LEADFLOW_TEST_BYTECODE_CACHE=0``: what every run costs when
``PYTHONDONTWRITEBYTECODE`` is set and nothing keeps bytecode (each run compiles
the project's modules and rewrites the test modules' assertions again; see
tests/unit/conftest.py).

Then the floor: a file of ``--floor-tests`` trivial tests
(``def test_n(): assert n == n``), one of as many trivial async tests, and one
with a single test (pytest's fixed cost), each run alone next to copies of
tests/unit/pytest.ini and tests/unit/conftest.py: the same plugins, options and
bytecode cache. They are kept in ``--floor-dir`` so their bytecode stays cached
between runs, as the unit tier's does.

Medians are reported. The load average before and after says how quiet the
machine was: on 2 cores, anything above ~0.5 disturbs the numbers. The
environment is passed through (``PYTHONDONTWRITEBYTECODE`` is recorded).

Prints the JSON, then a table, and writes the JSON to ``--out``. Exit status 1
when a run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "tests" / "unit"
SUMMARY = re.compile(r"(\d+) (?:passed|tests? collected)\b.* in ([0-9.]+)s")


@dataclass(frozen=True)
class Run:
    pytest_s: float  # pytest's own "in X s"
    wall_s: float  # the subprocess, interpreter start to exit
    cpu_s: float  # user + system of the subprocess
    tests: int
    ok: bool
    last_line: str


def run_pytest(args: Sequence[str], cwd: Path = ROOT, env: Mapping[str, str] | None = None) -> Run:
    """One ``python -m pytest -q ARGS`` in a subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    match = SUMMARY.search(last)
    return Run(
        pytest_s=float(match.group(2)) if match else float("nan"),
        wall_s=wall,
        cpu_s=cpu,
        tests=int(match.group(1)) if match else 0,
        ok=proc.returncode == 0 and match is not None,
        last_line=last.strip("= "),
    )


def medians(runs: Sequence[Run]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "tests": runs[-1].tests if runs else 0,
        "pytest_s": round(statistics.median(r.pytest_s for r in runs), 3),
        "wall_s": round(statistics.median(r.wall_s for r in runs), 3),
        "cpu_s": round(statistics.median(r.cpu_s for r in runs), 3),
        "pytest_s_all": [r.pytest_s for r in runs],
        "wall_s_all": [round(r.wall_s, 3) for r in runs],
        "ok": all(r.ok for r in runs),
        "last_line": runs[-1].last_line if runs else "",
    }


def write_if_changed(path: Path, text: str) -> None:
    """Rewriting an unchanged file would make its cached bytecode stale."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def floor_files(directory: Path, n: int) -> dict[str, Path]:
    """Trivial test files (``n`` sync tests, ``n`` async tests, one test) next to
    copies of the unit tier's pytest.ini and conftest.py: the same plugins,
    options and bytecode cache as ``pytest tests/unit``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("pytest.ini", "conftest.py"):
        write_if_changed(directory / name, (UNIT / name).read_text())
    sync = "".join(f"def test_sync_{i}() -> None:\n    assert {i} == {i}\n\n\n" for i in range(n))
    coro = "".join(
        f"async def test_async_{i}() -> None:\n    assert {i} == {i}\n\n\n" for i in range(n)
    )
    files = {
        "sync": directory / "test_floor_sync.py",
        "async": directory / "test_floor_async.py",
        "one": directory / "test_floor_one.py",
    }
    write_if_changed(files["sync"], sync)
    write_if_changed(files["async"], coro)
    write_if_changed(files["one"], "def test_one() -> None:\n    assert 1 == 1\n")
    return files


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return ""


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("pytest", "pytest-asyncio", "pytest-aiohttp", "hypothesis", "pytest-xdist"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def measure(runs: int, floor_tests: int, floor_dir: Path, uncached_runs: int) -> dict[str, Any]:
    began = time.time()
    load_before = loadavg()
    run_pytest(["tests/unit"])  # warm-up: the file cache, and the bytecode cache
    collect = [run_pytest(["tests/unit", "--collect-only"]) for _ in range(runs)]
    tier = [run_pytest(["tests/unit"]) for _ in range(runs)]
    no_cache = {"LEADFLOW_TEST_BYTECODE_CACHE": "0"}
    uncached = [run_pytest(["tests/unit"], env=no_cache) for _ in range(uncached_runs)]
    floor: dict[str, Any] = {}
    if floor_tests:
        files = floor_files(floor_dir, floor_tests)
        for name, path in files.items():
            run_pytest([path.name], cwd=floor_dir)  # warm-up
            floor[name] = medians([run_pytest([path.name], cwd=floor_dir) for _ in range(runs)])
    load_after = loadavg()
    result: dict[str, Any] = {
        "benchmark": "unit_tier",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "duration_s": round(time.time() - began, 1),
        "git": git_commit(),
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": load_after,
        },
        "versions": versions(),
        "environment": {
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
            "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX", ""),
        },
        "command": "python -m pytest tests/unit -q",
        "collect": medians(collect),
        "run": medians(tier),
        "run_without_bytecode_cache": medians(uncached) if uncached else None,
        "floor": floor,
    }
    if floor:
        both = floor["sync"]["pytest_s"] + floor["async"]["pytest_s"]
        result["floor_summary"] = {
            "tests": 2 * floor_tests,
            "pytest_s": round(both, 3),
            "sync_ms_per_test": round(1000 * floor["sync"]["pytest_s"] / floor_tests, 3),
            "async_ms_per_test": round(1000 * floor["async"]["pytest_s"] / floor_tests, 3),
            "startup_wall_s": floor["one"]["wall_s"],
        }
    return result


def table(result: dict[str, Any]) -> str:
    rows = [("unit tier, --collect-only", result["collect"]), ("unit tier", result["run"])]
    if result.get("run_without_bytecode_cache"):
        rows.append(("unit tier, no bytecode cache", result["run_without_bytecode_cache"]))
    floor = result.get("floor", {})
    names = {
        "sync": "floor: trivial sync tests",
        "async": "floor: trivial async tests",
        "one": "floor: one trivial test",
    }
    rows += [(names[k], v) for k, v in floor.items()]
    head = f"| {'what':<28} | {'tests':>5} | {'pytest s':>8} | {'wall s':>6} | {'cpu s':>5} |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for name, m in rows:
        lines.append(
            f"| {name:<28} | {m['tests']:>5} | {m['pytest_s']:>8.2f} | {m['wall_s']:>6.2f} "
            f"| {m['cpu_s']:>5.2f} |"
        )
    machine = result["machine"]
    lines.append("")
    lines.append(
        f"medians of {result['run']['runs']} runs; {machine['nproc']} cores; load average "
        f"{machine['load_before']} before, {machine['load_after']} after; "
        f"PYTHONDONTWRITEBYTECODE={result['environment']['PYTHONDONTWRITEBYTECODE']!r}"
    )
    if "floor_summary" in result:
        f = result["floor_summary"]
        lines.append(
            f"floor: {f['sync_ms_per_test']:.2f} ms a sync test, {f['async_ms_per_test']:.2f} ms"
            f" an async test; {f['tests']} trivial tests {f['pytest_s']:.2f} s"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.unit_tier", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement")
    parser.add_argument(
        "--floor-tests", type=int, default=500, help="trivial tests of each kind (0: no floor)"
    )
    parser.add_argument(
        "--uncached-runs",
        type=int,
        default=3,
        help="runs with LEADFLOW_TEST_BYTECODE_CACHE=0 (0: none)",
    )
    parser.add_argument(
        "--floor-dir",
        type=Path,
        default=Path.home() / ".cache" / "leadflow" / "bench" / "unit-tier-floor",
        help="where the trivial tests are written (kept: their bytecode stays cached)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "unit_tier.json")
    args = parser.parse_args(argv)
    result = measure(args.runs, args.floor_tests, args.floor_dir, args.uncached_runs)
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    ok = result["collect"]["ok"] and result["run"]["ok"]
    ok = ok and all(m["ok"] for m in result["floor"].values())
    ok = ok and (result["run_without_bytecode_cache"] or {"ok": True})["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
