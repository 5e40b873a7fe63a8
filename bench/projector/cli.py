"""Command line of ``python -m bench.projector``: the projector's throughput into Redis
(pipelined batches next to one awaited call per event, in the same run) and a full
replay from Kafka.

Exit status: 0 when every read-back check passed; 1 when a check failed (the
pipelined and baseline read models differ, or disagree with the log, or the
replay lost conversations); 2 when the run could not start or was interrupted.
The throughput targets do not affect it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import orjson

from bench.kafka.sysstats import machine_info, versions
from bench.procstats import Json, git_state
from bench.projector import profiling, report, suite
from bench.projector.config import DEFAULT_CACHE, DEFAULT_OUT, Config
from bench.projector.services import Services
from bench.projector.traffic import LogSpec, ensure_log

QUICK = {"events": 20_000, "replay_events": 100_000, "reps": 2}


def parse(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m bench.projector",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Config()
    p.add_argument("--events", type=int, default=None, help="engine part (default 200,000)")
    p.add_argument(
        "--replay-events",
        type=int,
        default=None,
        help="Kafka replay part (default 1,000,000; 0 skips it and Kafka)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20,000 engine events, 2 runs each, a 100,000-event replay",
    )
    p.add_argument("--reps", type=int, default=None, help="runs of each engine mode (default 3)")
    p.add_argument("--batch", type=int, default=d.batch, help="events per consumed batch")
    p.add_argument("--no-baseline", action="store_true", help="pipelined runs only")
    p.add_argument("--sample", type=int, default=d.sample, help="conversations read back")
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--chunk-conversations", type=int, default=d.chunk_conversations)
    p.add_argument("--interleave", type=int, default=d.interleave)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON (markdown beside it)")
    p.add_argument("--tmp-root", type=Path, default=None, help="where Redis and Kafka keep data")
    p.add_argument(
        "--py-spy-dir",
        type=Path,
        default=None,
        help="add a py-spy-profiled (unjudged) run of each part; stacks go here",
    )
    a = p.parse_args(argv)
    quick = QUICK if a.quick else {}
    cfg = Config(
        events=a.events if a.events is not None else quick.get("events", d.events),
        replay_events=(
            a.replay_events
            if a.replay_events is not None
            else quick.get("replay_events", d.replay_events)
        ),
        batch=a.batch,
        reps=a.reps if a.reps is not None else quick.get("reps", d.reps),
        baseline=not a.no_baseline,
        sample=a.sample,
        partitions=a.partitions,
        seed=a.seed,
        chunk_conversations=a.chunk_conversations,
        interleave=a.interleave,
        cache_dir=a.cache_dir,
        out=a.out,
        tmp_root=a.tmp_root,
        py_spy_dir=a.py_spy_dir,
    )
    if cfg.events < 1 or cfg.reps < 1 or cfg.batch < 1 or cfg.replay_events < 0:
        p.error("--events, --reps and --batch must be positive, --replay-events >= 0")
    if cfg.py_spy_dir is not None and not profiling.available():
        p.error("--py-spy-dir needs py-spy on the PATH (pip install py-spy)")
    return cfg


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _spec(cfg: Config, n: int) -> LogSpec:
    return LogSpec(n, cfg.seed, cfg.chunk_conversations, cfg.interleave)


async def _run(cfg: Config, services: Services, logs: dict[str, Path], results: Json) -> None:
    try:
        services.start_redis()
        results["engine"] = await suite.engine_part(cfg, services, logs["engine"])
        if "replay" in logs:
            results["replay"] = await suite.replay_part(cfg, services, logs["replay"])
    finally:
        await services.cleanup_external()


def _failed(results: Json) -> bool:
    engine, replayed = results.get("engine"), results.get("replay")
    if engine is None or (results["config"]["replay_events"] and replayed is None):
        return True
    return not engine["checks_ok"] or (replayed is not None and not replayed["run"]["checks"]["ok"])


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    began = time.perf_counter()
    results: Json = {
        "benchmark": "projector",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "git": git_state("projector", "schemas"),
        "config": cfg.as_json(),
        "engine": None,
        "replay": None,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-projector-", dir=cfg.tmp_root))
    services = Services(workdir)
    status = 0
    try:
        logs: dict[str, Path] = {}
        cached: dict[str, bool] = {}
        for part, n in (("engine", cfg.events), ("replay", cfg.replay_events)):
            if n:
                logs[part], cached[part] = ensure_log(_spec(cfg, n), cfg.cache_dir)
        results["logs"] = {p: {"file": str(f), "cached": cached[p]} for p, f in logs.items()}
        asyncio.run(_run(cfg, services, logs, results))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 2
    except Exception as exc:
        logging.exception("the benchmark could not run: %s", exc)
        status = 2
    finally:
        services.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["services"] = {"redis": services.redis_url, "kafka": services.bootstrap}
    results["notes"] = services.notes
    results["duration_s"] = round(time.perf_counter() - began, 1)
    if results["engine"] is None:
        return status or 2
    results["targets"] = suite.verdicts(results["engine"], results["replay"])
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    table = report.markdown(results)
    cfg.markdown_out.write_text(table)
    print()
    print(table)
    print(f"wrote {cfg.out} and {cfg.markdown_out} ({results['duration_s']} s)")
    return status or (1 if _failed(results) else 0)
