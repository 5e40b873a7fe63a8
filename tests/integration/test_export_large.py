"""``leadflow export`` of a log of more than 100,000 events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.cli import main
from tests.support.export_logs import cohort, replicate, type_counts, write_sqlite_log
from tests.support.traffic import simulate

COPIES = 8


def test_a_log_of_more_than_100k_events_exports_whole_and_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards the chunked reader (20,000 rows a chunk, more than one row group)
    and the cohort across chunks: every event once, in log order, and a
    time range in the middle of the log selects exactly its conversations."""
    base = asyncio.run(simulate(1_000, seed=13))
    span = base.events[-1].at - base.events[0].at + 1
    events = replicate(base.events, COPIES, span)
    assert len(events) >= 100_000
    write_sqlite_log(tmp_path / "data", events)
    out = tmp_path / "big.parquet"
    began = time.perf_counter()
    assert main(["export", "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 0
    seconds = time.perf_counter() - began
    assert f"exported {len(events):,} events of {COPIES * 1_000:,} conversations" in (
        capsys.readouterr().out
    )
    table = pq.read_table(out, columns=["event_id", "type"])
    assert table.column("event_id").to_pylist() == [e.id for e in events]
    assert pq.ParquetFile(out).metadata.num_row_groups >= 2
    assert dict(type_counts(events)) == {
        t: table.column("type").to_pylist().count(t) for t in type_counts(events)
    }
    since, until = events[0].at + 2.5 * span, events[0].at + 5.5 * span
    ranged = tmp_path / "range.parquet"
    argv = ["--from", str(since), "--to", str(until)]
    assert main(["export", "--data-dir", str(tmp_path / "data"), "--out", str(ranged), *argv]) == 0
    expected = [e.id for e in cohort(events, since, until)]
    assert pq.read_table(ranged, columns=["event_id"]).column("event_id").to_pylist() == expected
    assert seconds < 30, f"export of {len(events):,} events took {seconds:.1f} s"
