"""Where exported tables go: a Parquet file, a JSONL stream, or memory.

Files are written beside their destination as ``NAME.partial`` and renamed
into place only when the export completes: a failed export never leaves a
truncated file that looks complete.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Sink(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def finish(self) -> None:
        """Make the output complete (rename into place)."""
        ...

    def abort(self) -> None:
        """Drop what was written."""
        ...


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class ParquetSink:
    """One row group per table written; zstd-compressed."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._path = path
        self._partial = partial_path(path)
        self._writer = pq.ParquetWriter(self._partial, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def finish(self) -> None:
        self._writer.close()
        os.replace(self._partial, self._path)

    def abort(self) -> None:
        self._writer.close()
        self._partial.unlink(missing_ok=True)


def iso_at(micros: int) -> str:
    """``2025-11-26T00:00:01.250000Z`` from unix microseconds."""
    when = _EPOCH + dt.timedelta(microseconds=micros)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def jsonl_lines(table: pa.Table) -> bytes:
    """One JSON object per row, every column (null included), ``at`` in ISO 8601."""
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    if "at" in columns:
        at = table.column("at").cast(pa.int64()).to_pylist()
        columns["at"] = [iso_at(m) for m in at]
    names = list(columns)
    out = bytearray()
    for values in zip(*columns.values(), strict=True):
        out += orjson.dumps(dict(zip(names, values, strict=True)))
        out += b"\n"
    return bytes(out)


class JsonlSink:
    """JSON Lines to a file (renamed into place at the end) or a stream (stdout)."""

    def __init__(self, target: Path | IO[bytes]) -> None:
        self._path = target if isinstance(target, Path) else None
        self._stream: IO[bytes] = (
            open(partial_path(target), "wb")  # noqa: SIM115 (closed in finish/abort)
            if isinstance(target, Path)
            else target
        )

    def write(self, table: pa.Table) -> None:
        self._stream.write(jsonl_lines(table))

    def finish(self) -> None:
        self._stream.flush()
        if self._path is not None:
            self._stream.close()
            os.replace(partial_path(self._path), self._path)

    def abort(self) -> None:
        if self._path is not None:
            self._stream.close()
            partial_path(self._path).unlink(missing_ok=True)


class MemorySink:
    """Collects the tables (for :func:`projector.export.load_events`)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.tables: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        self.tables.clear()

    def table(self) -> Any:
        return pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()
