"""One benchmark run: the engine runs on Redis, then the replay through Kafka."""

from __future__ import annotations

import gc
import statistics
from pathlib import Path
from typing import Any

from bench.procstats import Json
from bench.projector import replay
from bench.projector.config import (
    TARGET_EVENTS_PER_S,
    TARGET_REPLAY_EVENTS,
    TARGET_REPLAY_SECONDS,
    Config,
)
from bench.projector.engine_runs import MODES, project_run
from bench.projector.profiling import Spy
from bench.projector.services import Services
from bench.projector.traffic import load_events, load_records
from bench.projector.verify import compare
from projector.redis_store import RedisReadModel
from services.distributed.settings import KafkaSettings


def _median(runs: list[Json], *path: str) -> float | None:
    values: list[float] = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return round(statistics.median(values), 4) if values else None


def _line(run: Json) -> str:
    cores = run["cores"]
    return (
        f"  {run['mode']:>9}: {run['events_per_s']:>9,.0f} events/s, {run['wall_s']:6.1f} s,"
        f" projector {cores.get('projector')} cores, redis {cores.get('redis')} cores,"
        f" others {cores.get('others')}"
    )


async def engine_part(cfg: Config, services: Services, log: Path) -> Json:
    events, summary = load_events(log)
    gc.collect()
    gc.freeze()  # the loaded log is not the projector's: keep it out of the GC's scans
    client = services.client()
    runs: dict[str, list[Json]] = {mode: [] for mode in MODES}
    checks: list[Json] = []
    modes = MODES if cfg.baseline else ("pipelined",)
    try:
        for rep in range(cfg.reps):
            print(f"engine run {rep + 1}/{cfg.reps} ({len(events):,} events)", flush=True)
            stores: dict[str, RedisReadModel] = {}
            for mode in modes if rep % 2 == 0 else tuple(reversed(modes)):
                prefix = services.redis_prefix(f"{mode}-{rep + 1}")
                run, stores[mode] = await project_run(
                    client, prefix, events, mode, cfg.batch, services.redis_pid()
                )
                runs[mode].append(run)
                print(_line(run), flush=True)
            check = await compare(
                stores["pipelined"], stores.get("baseline"), summary, cfg.sample, cfg.seed + rep
            )
            checks.append(check)
            print(f"  read back: {'ok' if check['ok'] else 'MISMATCH'}", flush=True)
            for mode in stores:
                await services.drop_prefix(services.redis_prefix(f"{mode}-{rep + 1}"))
        profile = None
        if cfg.py_spy_dir is not None:
            print("profiled pipelined run (py-spy; not judged) ...", flush=True)
            prefix = services.redis_prefix("pipelined-profiled")
            spy = Spy(cfg.py_spy_dir / "projector-pipelined.txt")
            async with spy:
                run, _ = await project_run(
                    client, prefix, events, "pipelined", cfg.batch, services.redis_pid()
                )
            profile = {"run": run, **spy.summary()}
            await services.drop_prefix(prefix)
    finally:
        await client.aclose()
        gc.unfreeze()
    medians = {
        mode: {
            "events_per_s": _median(runs[mode], "events_per_s"),
            "wall_s": _median(runs[mode], "wall_s"),
            "projector_cpu_s_per_1k_events": _median(
                runs[mode], "cpu_s_per_1k_events", "projector"
            ),
            "events_per_projector_cpu_s": _median(runs[mode], "events_per_projector_cpu_s"),
            "projector_cores": _median(runs[mode], "cores", "projector"),
            "redis_cores": _median(runs[mode], "cores", "redis"),
            "redis_cpu_s_per_1k_events": _median(runs[mode], "cpu_s_per_1k_events", "redis"),
            "others_cores": _median(runs[mode], "cores", "others"),
            "gc_ms_per_1k_events": _median(runs[mode], "gc", "ms_per_1k_events"),
        }
        for mode in modes
    }
    pipe_rate = medians["pipelined"]["events_per_s"]
    base_rate = medians.get("baseline", {}).get("events_per_s")
    ratio = round(pipe_rate / base_rate, 2) if pipe_rate and base_rate else None
    return {
        "events": len(events),
        "batch": cfg.batch,
        "conversations": len(summary.conversations),
        "runs": runs,
        "medians": medians,
        "ratio_pipelined_to_baseline": ratio,
        "checks": checks,
        "checks_ok": all(c["ok"] for c in checks),
        "profile": profile,
    }


async def replay_part(cfg: Config, services: Services, log: Path) -> Json:
    records, summary = load_records(log)
    services.start_kafka()
    settings = KafkaSettings(
        bootstrap=services.bootstrap, prefix=services.topic_prefix, partitions=cfg.partitions
    )
    print(f"producing {len(records):,} records ({summary.events:,} events) ...", flush=True)
    produced = await replay.produce(settings, records, summary)
    print(f"  {produced['wall_s']} s ({produced['records_per_s']:,.0f} records/s)", flush=True)
    del records
    gc.collect()
    client = services.client()
    try:
        print(f"replaying {summary.events:,} events from Kafka into Redis ...", flush=True)
        prefix = services.redis_prefix("replay")
        run = await replay.rebuild(
            settings, client, prefix, summary, services.redis_pid(), services.broker_pid()
        )
        print(
            f"  {run['events_per_s']:,.0f} events/s, {run['wall_s']} s, checks "
            f"{'ok' if run['checks']['ok'] else 'FAILED'}",
            flush=True,
        )
        await services.drop_prefix(prefix)
        profiled = None
        if cfg.py_spy_dir is not None:
            print("profiled replay (py-spy; not judged) ...", flush=True)
            prefix = services.redis_prefix("replay-profiled")
            profiled = await replay.rebuild(
                settings,
                client,
                prefix,
                summary,
                services.redis_pid(),
                services.broker_pid(),
                profile_out=cfg.py_spy_dir / "projector-replay.txt",
            )
            await services.drop_prefix(prefix)
    finally:
        await client.aclose()
    return {"produce": produced, "run": run, "profiled": profiled}


def verdicts(engine: Json | None, replayed: Json | None) -> Json:
    out: Json = {}
    if engine is not None:
        rate = engine["medians"]["pipelined"]["events_per_s"]
        out["engine_events_per_s"] = {
            "target": f">= {TARGET_EVENTS_PER_S:,.0f} events/s (pipelined, median)",
            "measured": rate,
            "pass": rate is not None and rate >= TARGET_EVENTS_PER_S,
        }
    if replayed is not None:
        run = replayed["run"]
        full = run["events"] >= TARGET_REPLAY_EVENTS
        needed = TARGET_REPLAY_EVENTS / TARGET_REPLAY_SECONDS
        out["replay_seconds"] = {
            "target": f"{TARGET_REPLAY_EVENTS:,} events in <= {TARGET_REPLAY_SECONDS:.0f} s",
            "measured": run["wall_s"],
            "events": run["events"],
            "pass": (run["wall_s"] <= TARGET_REPLAY_SECONDS) if full else None,
            "rate_needed_events_per_s": round(needed, 1),
            "rate_pass": run["events_per_s"] >= needed,
        }
    return out
