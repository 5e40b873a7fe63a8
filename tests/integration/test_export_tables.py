"""The export's Arrow tables and JSON Lines (pyarrow: a tenth of a second to
import and more on first use, so here rather than in the unit tier). The
columns the tables are built from are tested in tests/unit/test_export_columns.py
and tests/integration/test_export_raw.py."""

from __future__ import annotations

import asyncio

import orjson
import pyarrow as pa
import pytest

from projector.export.arrow import schema, to_table
from projector.export.columns import OpenedLead, column_names
from projector.export.raw import RawBatch
from projector.export.raw_columns import raw_to_columns, to_columns
from projector.export.sinks import iso_at, jsonl_lines
from schemas.events import LeadCaptured
from tests.integration.test_export_raw import both, objs
from tests.support.traffic import simulate
from tests.unit.test_export_columns import T, one_of_each


def test_the_table_has_the_declared_schema_and_keeps_a_63_bit_seed() -> None:
    table = to_table(to_columns(one_of_each(), {}, include_pii=False), include_pii=False)
    assert table.schema == schema(False)
    assert table.column("seed").to_pylist()[3] == (1 << 63) - 1
    assert table.column("at").type == pa.timestamp("us", tz="UTC")
    assert table.column("at")[0].as_py().timestamp() == T + 1


def test_without_pii_the_jsonl_holds_no_contact_detail_and_no_sealed_blob() -> None:
    text = jsonl_lines(to_table(to_columns(one_of_each(), {}, include_pii=False), False))
    for secret in (b"SEALED-BLOB", b"ann@example.com", b"sealed"):
        assert secret not in text


def test_with_pii_the_table_has_the_lead_columns_and_no_sealed_blob() -> None:
    events = one_of_each()
    opened = {events[5].id: OpenedLead({"email": "ann@example.com", "name": "Ann"})}
    table = to_table(to_columns(events, {}, True, opened), include_pii=True)
    assert table.schema == schema(True)
    assert b"SEALED-BLOB" not in jsonl_lines(table)


def test_jsonl_rows_hold_every_column_with_an_iso_time() -> None:
    table = to_table(to_columns(one_of_each(), {}, include_pii=False), include_pii=False)
    lines = jsonl_lines(table).splitlines()
    first = orjson.loads(lines[0])
    assert list(first) == list(column_names(False))
    assert first["at"] == "2025-11-26T00:00:01.250000Z"
    assert iso_at(0) == "1970-01-01T00:00:00.000000Z"
    assert orjson.loads(lines[3])["candidates"] == ["a", "b"]


@pytest.mark.parametrize("pii", [False, True])
def test_every_event_type_gives_the_same_table(pii: bool) -> None:
    events = one_of_each()
    leads = {e.id: OpenedLead({"email": "a@b.c"}) for e in events if isinstance(e, LeadCaptured)}
    generic, fast = both(events, pii, leads)
    assert to_table(fast, pii).equals(to_table(generic, pii))


def test_a_simulated_log_gives_the_same_table() -> None:
    events = asyncio.run(simulate(150, seed=4)).events
    generic, fast = both(events, pii=False)
    assert to_table(fast, False).equals(to_table(generic, False))


def test_a_wrongly_typed_field_does_not_make_a_table() -> None:
    raw = objs(one_of_each())
    raw[2]["node_id"] = 5
    batch = RawBatch(raw, [(1, i) for i in range(len(raw))])
    with pytest.raises(TypeError):
        to_table(raw_to_columns(batch.objs, {}, False), False)
