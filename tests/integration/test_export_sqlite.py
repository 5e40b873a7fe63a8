"""``leadflow export`` and ``load_events`` on a real embedded (SQLite) log."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from app.cli import main
from projector.export import load_events
from projector.export.arrow import schema
from projector.export.source import Selection, SqliteOrigin, iter_events
from schemas.events import ConversationStarted, Event, LeadCaptured
from tests.support.export_logs import (
    cohort,
    insert_raw_row,
    leadflow,
    type_counts,
    write_sqlite_log,
)
from tests.support.traffic import T0, Traffic, simulate

CONVERSATIONS = 1_200
EMAILS = re.compile(rb"visitor\d+@example\.com")
PHONES = re.compile(rb"\+?1 ?415 ?555 ?\d{4}")


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return asyncio.run(simulate(CONVERSATIONS, seed=5))


@pytest.fixture(scope="module")
def data_dir(traffic: Traffic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "data"
    write_sqlite_log(path, traffic.events, dict(traffic.keys._keys))
    return path


def export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", *args])
    out, err = capsys.readouterr()
    return code, out, err


def exported_ids(path: Path) -> list[str]:
    ids: list[str] = pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    return ids


def starts(events: list[Event]) -> list[ConversationStarted]:
    return [e for e in events if isinstance(e, ConversationStarted)]


def test_parquet_round_trip_holds_every_event(
    traffic: Traffic, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.parquet"
    code, stdout, _ = export(capsys, "--data-dir", str(data_dir), "--out", str(out))
    assert code == 0
    table = pq.read_table(out)
    assert table.schema == schema(False)
    assert table.column("event_id").to_pylist() == [e.id for e in traffic.events]
    assert dict(type_counts(traffic.events)) == dict(
        pd.Series(table.column("type").to_pylist()).value_counts()
    )
    n = len(traffic.events)
    assert re.fullmatch(
        rf"exported {n:,} events of {CONVERSATIONS:,} conversations to {re.escape(str(out))}"
        r" in \d+\.\d s\n",
        stdout,
    )
    assert not list(tmp_path.glob("*.partial"))


def test_jsonl_holds_the_same_rows_as_parquet(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(capsys, "--data-dir", str(data_dir), "--out", str(tmp_path / "a.parquet"))[0] == 0
    assert export(capsys, "--data-dir", str(data_dir), "--out", str(tmp_path / "a.jsonl"))[0] == 0
    parquet = pq.read_table(tmp_path / "a.parquet").to_pylist()
    lines = [orjson.loads(line) for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert len(lines) == len(parquet)
    for row, line in zip(parquet, lines, strict=True):
        at = row.pop("at")
        assert line.pop("at") == at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert line == row


def test_time_range_selects_conversations_started_in_it_with_all_their_events(
    traffic: Traffic, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--to bounds the starts, not the events: a conversation started before --to
    is exported whole, and one started before --from not at all."""
    times = sorted(e.at for e in starts(traffic.events))
    since, until = times[300], times[700]
    out = tmp_path / "range.parquet"
    args = [
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--from",
        str(since),
        "--to",
        str(until),
    ]
    code, stdout, _ = export(capsys, *args)
    assert code == 0
    expected = cohort(traffic.events, since, until)
    assert exported_ids(out) == [e.id for e in expected]
    assert f"of {400:,} conversations" in stdout
    assert any(e.at >= until for e in expected)  # the guarded case really occurs
    iso = pd.Timestamp(since, unit="s", tz="UTC").isoformat()
    code, _, _ = export(capsys, "--data-dir", str(data_dir), "--out", str(out), "--from", iso)
    assert exported_ids(out) == [e.id for e in cohort(traffic.events, since)]


@pytest.mark.parametrize(
    ("flow", "site"), [("saas-demo", None), (None, "globex"), ("solar-quote", "acme")]
)
def test_flow_and_site_filters(
    traffic: Traffic,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flow: str | None,
    site: str | None,
) -> None:
    out = tmp_path / "f.jsonl"
    args = ["--data-dir", str(data_dir), "--out", str(out)]
    args += ["--flow", flow] if flow else []
    args += ["--site", site] if site else []
    assert export(capsys, *args)[0] == 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected = cohort(traffic.events, flow_id=flow, site_id=site)
    assert expected
    assert [r["event_id"] for r in rows] == [e.id for e in expected]
    if flow:
        assert {r["flow_id"] for r in rows} == {flow}
    if site:
        assert {r["site_id"] for r in rows} == {site}


def test_an_empty_range_writes_a_valid_empty_file(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    future = str(T0 + 10 * 365 * 86400)
    for name in ("empty.parquet", "empty.jsonl"):
        out = tmp_path / name
        code, stdout, _ = export(
            capsys, "--data-dir", str(data_dir), "--out", str(out), "--from", future
        )
        assert code == 0
        assert stdout.startswith("exported 0 events of 0 conversations")
    empty = pq.read_table(tmp_path / "empty.parquet")
    assert empty.num_rows == 0 and empty.schema == schema(False)
    assert (tmp_path / "empty.jsonl").read_bytes() == b""


def test_an_unknown_schema_version_stops_with_position_and_version(
    traffic: Traffic, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    first = starts(traffic.events)[0]
    body = orjson.loads(orjson.dumps(first))
    body.update(seq=999, type="ButtonPressed", v=99, node_id="n", button_id="b")
    position = insert_raw_row(copy, first.conversation_id, 999, "ButtonPressed", orjson.dumps(body))
    out = tmp_path / "x.parquet"
    code, stdout, stderr = export(capsys, "--data-dir", str(copy), "--out", str(out))
    assert code == 2
    assert f"events.db position {position}" in stderr
    assert "ButtonPressed version 99" in stderr and "upgrade leadflow" in stderr
    assert stdout == ""
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_a_wrongly_typed_field_stops_with_its_position(
    traffic: Traffic, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record of a known version but a malformed field fails the fast path;
    the generic decoder then names it, and nothing is written."""
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    first = starts(traffic.events)[0]
    body = orjson.loads(orjson.dumps(first))
    body.update(seq=999, type="NodeEntered", node_id=["not", "a", "string"], kind="end")
    position = insert_raw_row(copy, first.conversation_id, 999, "NodeEntered", orjson.dumps(body))
    out = tmp_path / "x.parquet"
    code, _, stderr = export(capsys, "--data-dir", str(copy), "--out", str(out))
    assert code == 2
    assert f"events.db position {position}: unreadable record" in stderr and "node_id" in stderr
    assert not out.exists()


def test_no_event_log_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = export(
        capsys, "--data-dir", str(tmp_path), "--out", str(tmp_path / "x.jsonl")
    )
    assert code == 2 and "no event log" in stderr
    assert not (tmp_path / "events.db").exists()


def test_include_pii_puts_leads_in_the_file_and_never_on_the_terminal(
    traffic: Traffic, data_dir: Path, tmp_path: Path
) -> None:
    """The lead details are opened with the conversations' keys into the file; the
    terminal output (progress, summary) carries none of them; an erased key
    exports an erased lead."""
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    leads = [e for e in traffic.events if isinstance(e, LeadCaptured)]
    erased = leads[0].conversation_id
    with sqlite3.connect(copy / "keys.db") as conn:
        conn.execute("DELETE FROM conversation_keys WHERE conversation_id = ?", (erased,))
    out = tmp_path / "pii.parquet"
    result = leadflow("export", "--data-dir", str(copy), "--out", str(out), "--include-pii")
    assert result.returncode == 0, result.stderr
    terminal = (result.stdout + result.stderr).encode()
    assert not EMAILS.search(terminal) and not PHONES.search(terminal)
    rows = [r for r in pq.read_table(out).to_pylist() if r["type"] == "LeadCaptured"]
    assert len(rows) == len(leads)
    by_conversation = {r["conversation_id"]: r for r in rows}
    assert by_conversation[erased]["lead"] is None and by_conversation[erased]["lead_erased"]
    opened = [orjson.loads(r["lead"]) for r in rows if r["conversation_id"] != erased]
    assert all(EMAILS.fullmatch(lead["email"].encode()) for lead in opened)
    assert any("phone" in lead for lead in opened)


def test_without_include_pii_no_contact_detail_is_in_the_files(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("plain.parquet", "plain.jsonl"):
        assert export(capsys, "--data-dir", str(data_dir), "--out", str(tmp_path / name))[0] == 0
    jsonl = (tmp_path / "plain.jsonl").read_bytes()
    parquet_text = orjson.dumps(pq.read_table(tmp_path / "plain.parquet").to_pylist(), default=str)
    for blob in (jsonl, parquet_text):
        assert b"@example.com" not in blob and b"415555" not in blob and b"sealed" not in blob
    assert "lead" not in pq.read_schema(tmp_path / "plain.parquet").names


def test_include_pii_refuses_stdout(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = export(
        capsys, "--data-dir", str(data_dir), "--out", "-", "--include-pii"
    )
    assert code == 2 and stdout == "" and "not to stdout" in stderr


def test_jsonl_to_stdout_keeps_the_summary_off_stdout(
    traffic: Traffic, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, stderr = export(
        capsys, "--data-dir", str(data_dir), "--out", "-", "--site", "acme"
    )
    assert code == 0
    rows = [orjson.loads(line) for line in stdout.splitlines()]
    assert [r["event_id"] for r in rows] == [e.id for e in cohort(traffic.events, site_id="acme")]
    assert "exported" in stderr


def test_load_events_equals_the_parquet_file(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.parquet"
    assert (
        export(capsys, "--data-dir", str(data_dir), "--out", str(out), "--flow", "saas-demo")[0]
        == 0
    )
    frame = load_events(data_dir, flow_id="saas-demo")
    pd.testing.assert_frame_equal(frame, pq.read_table(out).to_pandas())
    with_pii = load_events(data_dir, flow_id="saas-demo", include_pii=True)
    assert list(with_pii.columns) == list(schema(True).names)


async def test_load_events_works_inside_a_running_event_loop(data_dir: Path) -> None:
    """Jupyter runs an event loop; load_events must not call asyncio.run on it."""
    frame = load_events(str(data_dir), site_id="acme", since=T0)
    assert len(frame) and set(frame["site_id"]) == {"acme"}
    assert str(frame["at"].dtype) == "datetime64[us, UTC]"


async def test_iter_events_yields_the_decoded_events_of_the_selection(
    traffic: Traffic, data_dir: Path
) -> None:
    """The shared source (report, off-policy evaluation) gives dataclasses equal
    to what was appended, and reports its progress up to the whole scan."""
    seen: list[tuple[int, int]] = []
    got: list[Event] = []
    origin, selection = SqliteOrigin(data_dir), Selection(flow_id="solar-quote")
    async for batch in iter_events(
        origin, selection, lambda done, total: seen.append((done, total))
    ):
        got.extend(batch)
    assert got == cohort(traffic.events, flow_id="solar-quote")
    assert seen[-1] == (len(traffic.events), len(traffic.events))
