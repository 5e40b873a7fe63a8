"""``leadflow export``: the events of a time range, flow or site, as Parquet or JSONL.

Reads the embedded SQLite log (``--data-dir``) or, with ``--kafka``, the
``events`` topic, without disturbing either (see
:mod:`projector.export.source`). A progress bar goes to stderr and one final
line to stdout. Contact details are exported only with ``--include-pii``, and
then only into the file: never to the terminal (so not with ``--out -``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

FORMATS = ("parquet", "jsonl")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from projector.export.source import add_source_arguments

    export = sub.add_parser(
        "export",
        help="export events to Parquet or JSONL",
        description="Export the events of the selected conversations (docs/analytics.md).",
    )
    add_source_arguments(export)
    export.add_argument(
        "--out", required=True, help="output file (.parquet or .jsonl), or - for JSONL on stdout"
    )
    export.add_argument("--format", choices=FORMATS, help="default: from the --out suffix")
    export.add_argument(
        "--include-pii",
        action="store_true",
        help="add the leads' contact details (lead, lead_erased); only into a file",
    )


def output_format(out: str, given: str | None) -> str:
    """The format named by ``--format``, else by the suffix of ``--out``."""
    if given is not None:
        return given
    if out == "-":
        return "jsonl"
    fmt = _SUFFIXES.get(Path(out).suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {out}: say --format parquet or jsonl (unknown suffix)")
    return fmt


def check_args(out: str, fmt: str, include_pii: bool) -> None:
    """Refuse what would put data where it must not go."""
    if out == "-" and include_pii:
        raise ValueError("--include-pii writes contact details only to a file, not to stdout")
    if out == "-" and fmt == "parquet":
        raise ValueError("Parquet goes to a file; use --format jsonl for stdout")


async def _run(args: argparse.Namespace, fmt: str) -> tuple[str, int]:
    from app.cli_replay import ProgressBar
    from projector.export.api import lead_keys
    from projector.export.arrow import schema
    from projector.export.export import export_events
    from projector.export.sinks import JsonlSink, ParquetSink, Sink
    from projector.export.source import origin_and_selection

    origin, selection = origin_and_selection(args)
    sink: Sink
    if fmt == "parquet":
        sink = ParquetSink(Path(args.out), schema(args.include_pii))
    else:
        sink = JsonlSink(sys.stdout.buffer if args.out == "-" else Path(args.out))
    keys = lead_keys(origin) if args.include_pii else None
    try:
        result = await export_events(
            origin, selection, sink, keys=keys, progress=ProgressBar(sys.stderr, label="export")
        )
    finally:
        if keys is not None:
            await keys.close()
    where = "stdout" if args.out == "-" else args.out
    line = (
        f"exported {result.events:,} events of {result.conversations:,} conversations"
        f" to {where} in {result.seconds:.1f} s"
    )
    return line, result.conversations


def main(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    from app.cli_errors import CliError, known_failure
    from app.cli_ids import IdCheck
    from projector.export.source import NoEventLog, UnreadableLog

    try:
        fmt = output_format(args.out, args.format)
        check_args(args.out, fmt, args.include_pii)
    except ValueError as exc:
        print(f"leadflow export: {exc}", file=sys.stderr)
        return 2
    # a mistyped --flow or --site: an error naming the ids there are, not an empty file
    ids = IdCheck(args.flow_id, args.site_id)
    ids.before(None if args.kafka else Path(args.data_dir))
    report = sys.stderr if args.out == "-" else sys.stdout
    try:
        line, conversations = asyncio.run(_run(args, fmt))
    except NoEventLog as exc:
        print(f"leadflow export: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, RedisError, OSError) as exc:
        known = known_failure(exc)
        why = known.message if known is not None else f"{type(exc).__name__}: {exc}"
        print(f"leadflow export: stopped, nothing written: {why}", file=sys.stderr)
        return 2
    except UnreadableLog as exc:
        print(f"leadflow export: stopped, nothing written: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `--out - | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    try:
        ids.after(conversations)  # the Kafka topic: known only once it was read
    except CliError:
        if args.out != "-":
            Path(args.out).unlink(missing_ok=True)  # the empty file this run wrote
        raise
    print(line, file=report)
    return 0
