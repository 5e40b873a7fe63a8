"""Run the export benchmark and write ``bench/results/export.{json,md}``.

For each origin (SQLite, then Kafka unless ``--no-kafka``): ``--runs`` timed
exports of the whole log to Parquet, each beside a raw read of the same log
(the baseline), alternating which goes first. Rates are the log's events per
wall second; the verdict is the median export rate against the target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.export.logs import generate, produce, write_sqlite
from bench.export.report import markdown
from bench.export.runs import Run, export_run, raw_kafka_run, raw_sqlite_run
from bench.infra import kafka_for_bench
from bench.procstats import cpu_model, git_state
from projector.export.source import KafkaOrigin, SqliteOrigin
from services.distributed.settings import KafkaSettings

TARGET = 50_000  # events/s to Parquet (issue 6)
RESULTS = Path(__file__).resolve().parents[1] / "results"


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-kafka", action="store_true", help="SQLite only")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def _series(events: int, runs: list[Run]) -> dict[str, Any]:
    rates = [events / r.seconds for r in runs]
    return {
        "runs": [r.json(events) for r in runs],
        "median_events_per_s": round(statistics.median(rates)),
        "median_seconds": round(statistics.median(r.seconds for r in runs), 3),
        "median_cpu_seconds": round(statistics.median(r.cpu_seconds for r in runs), 3),
        "median_events_per_cpu_s": round(statistics.median(events / r.cpu_seconds for r in runs)),
        "median_others_cores": _median_or_none([r.json(events)["others_cores"] for r in runs]),
    }


def _median_or_none(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def _pairs(events: int, runs: int, export: Any, raw: Any) -> dict[str, Any]:
    exports: list[Run] = []
    raws: list[Run] = []
    for i in range(runs):
        if i % 2:
            raws.append(raw())
            exports.append(export())
        else:
            exports.append(export())
            raws.append(raw())
        print(f"  run {i + 1}: export {exports[-1].seconds:.2f} s, raw {raws[-1].seconds:.2f} s")
    for run in exports:
        if run.events != events:
            raise AssertionError(f"exported {run.events:,} of {events:,} events")
    out = {"export": _series(events, exports), "raw": _series(events, raws)}
    out["export_over_raw_seconds"] = round(
        out["export"]["median_seconds"] / max(1e-9, out["raw"]["median_seconds"]), 2
    )
    out["pass"] = out["export"]["median_events_per_s"] >= TARGET
    return out


def _kafka(args: argparse.Namespace, work: Path, events: list[Any], notes: list[str]) -> Any:
    bootstrap, broker = kafka_for_bench(work, notes)
    try:
        settings = KafkaSettings(
            bootstrap=bootstrap, prefix=f"bx{uuid.uuid4().hex[:6]}.", partitions=args.partitions
        )
        records, seconds = produce(settings, events)
        notes.append(f"Kafka: {records:,} records produced beforehand in {seconds:.1f} s (untimed)")
        print(f"kafka: {records:,} records on {args.partitions} partitions")
        out = work / "kafka.parquet"
        result = _pairs(
            len(events),
            args.runs,
            lambda: export_run(KafkaOrigin(settings), out),
            lambda: raw_kafka_run(settings),
        )
        result["records"] = records
        result["partitions"] = args.partitions
        return result
    finally:
        if broker is not None:
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    load = os.getloadavg()
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        events = generate(args.events)
        seconds = write_sqlite(work / "data", events)
        notes.append(f"SQLite log written beforehand in {seconds:.1f} s (untimed)")
        print(f"sqlite: {len(events):,} events")
        out = work / "sqlite.parquet"
        export_run(SqliteOrigin(work / "data"), out)  # warm-up: imports, first allocations
        notes.append("one untimed SQLite export first (warm-up)")
        results: dict[str, Any] = {
            "sqlite": _pairs(
                len(events),
                args.runs,
                lambda: export_run(SqliteOrigin(work / "data"), out),
                lambda: raw_sqlite_run(work / "data"),
            )
        }
        results["sqlite"]["parquet_bytes"] = out.stat().st_size
        if not args.no_kafka:
            results["kafka"] = _kafka(args, work, events, notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "export",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "events": len(events),
        "target_events_per_s": TARGET,
        "results": results,
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "load_at_start": load,
            "load_at_end": os.getloadavg(),
        },
        "git": git_state("projector/export", "bench/export"),
        "notes": notes,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "export.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    text = markdown(report)
    (args.results / "export.md").write_text(text)
    print(text)
    return 0 if all(r["pass"] for r in results.values()) else 1
