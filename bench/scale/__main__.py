"""``python -m bench.scale``: see bench/README.md ("bench.scale") and the package doc."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.procstats import cpu_model, git_state
from bench.scale import results
from bench.scale.measure import CpuWindow, loadavg, open_connections, rss_all
from bench.scale.plan import Plan, PlanError, default_gateways, default_loadgens, plan
from bench.scale.report import markdown
from bench.scale.stack import Stack

Json = dict[str, Any]
RESULTS = Path(__file__).resolve().parents[1] / "results"
TARGET_PRESS_P99_MS = 100.0
ANSWERS = {"open": "opened", "play": "playing", "probes_off": "probes_off",
           "status": "status", "result": "result"}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--sockets", type=int, default=100_000, help="visitor sockets held")
    p.add_argument("--active", type=int, default=1000, help="of them, visitors playing flows")
    p.add_argument("--gateways", type=int, default=0, help="0: the fewest that fit (>= 3)")
    p.add_argument("--loadgens", type=int, default=0, help="0: one per --per-loadgen sockets")
    p.add_argument("--per-loadgen", type=int, default=17_000)
    p.add_argument("--processors", type=int, default=2)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument(
        "--victim-share", type=float, default=0.2, help="of the sockets, on the killed gateway"
    )
    p.add_argument(
        "--ramp-concurrency", type=int, default=96, help="sockets opening at once, in all"
    )
    p.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("LO", "HI"))
    p.add_argument(
        "--idle-seconds", type=float, default=25.0, help="idle CPU window (> the 20 s heartbeat)"
    )
    p.add_argument("--active-seconds", type=float, default=60.0)
    p.add_argument(
        "--probe-interval",
        type=float,
        default=2.0,
        help="seconds between probes, per load generator",
    )
    p.add_argument("--failover-timeout", type=float, default=300.0)
    p.add_argument("--after-seconds", type=float, default=15.0, help="playing on after all resumed")
    p.add_argument("--ramp-timeout", type=float, default=0.0, help="0: 300 s + 20 ms per socket")
    p.add_argument("--transcript-sample", type=int, default=40, help="per load generator")
    p.add_argument("--no-kill", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    p.add_argument("--md", type=Path, default=RESULTS / "scale.md")
    p.add_argument("--tmp-root", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the services' logs")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    return p.parse_args(argv)


def budget() -> int:
    """Sockets one process may hold: the hard open-files limit less 1,000 (Kafka,
    Redis, listeners, files)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return (1 << 20 if hard == resource.RLIM_INFINITY else hard) - 1000


class LoadGens:
    """The load-generator subprocesses and their command lines."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def spawn(self, configs: list[Json], workdir: Path) -> None:
        for config in configs:
            log = (workdir / f"loadgen-{config['id']}.log").open("ab")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.scale.loadgen", orjson.dumps(config).decode(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, limit=1 << 28,
            )  # fmt: skip
            self.procs.append(proc)

    @property
    def pids(self) -> dict[str, int]:
        return {f"loadgen-{i}": p.pid for i, p in enumerate(self.procs)}

    async def ask(self, cmd: str, limit_s: float) -> list[Json]:
        """Send a command to every load generator; their answers, in order."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps({"cmd": cmd}) + b"\n")
            await proc.stdin.drain()

        async def answer(proc: asyncio.subprocess.Process) -> Json:
            assert proc.stdout is not None
            while True:  # an answer to an earlier command that timed out is skipped
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"load generator {proc.pid} exited (see its log)")
                out: Json = orjson.loads(line)
                if out.get("event") == ANSWERS[cmd]:
                    return out

        async with asyncio.timeout(limit_s):
            return list(await asyncio.gather(*(answer(p) for p in self.procs)))

    async def close(self) -> None:
        """Ask each to exit; kill what is still there after 10 s; reap them all."""
        for proc in self.procs:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write(b'{"cmd":"exit"}\n')
                await proc.stdin.drain()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def kill(self) -> None:
        """SIGKILL every load generator still running (also after the loop closed)."""
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)


def loadgen_configs(args: argparse.Namespace, layout: Plan, urls: list[str]) -> list[Json]:
    configs, base = [], 0
    actives = _spread(args.active, len(layout.loadgens))
    gate = max(1, math.ceil(args.ramp_concurrency / len(layout.loadgens)))
    for j, counts in enumerate(layout.loadgens):
        configs.append({
            "id": j, "source_ip": f"127.0.0.{2 + j}", "urls": urls, "counts": list(counts),
            "index_base": base, "active": min(actives[j], sum(counts)),
            "ramp_concurrency": gate, "think_s": list(args.think),
            "probe_interval_s": args.probe_interval, "victim": layout.victim,
            "transcript_sample": args.transcript_sample, "seed": 1000 + j,
        })  # fmt: skip
        base += sum(counts)
    return configs


def _spread(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


async def held_per_gateway(stack: Stack) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for s in stack.gateway_services:
        port = int(s.env["LEADFLOW_METRICS_PORT"])
        out[s.name] = await asyncio.to_thread(open_connections, port)
    return out


async def progress(stack: Stack, began: float, total: int) -> None:
    """Every 10 s: the sockets the gateways hold (their /metrics)."""
    while True:
        await asyncio.sleep(10.0)
        try:
            held = await held_per_gateway(stack)
        except Exception as exc:  # a progress line is not worth failing the run
            print(f"  (no progress: {exc!r})", flush=True)
            continue
        count = sum(v or 0 for v in held.values())
        print(f"  {time.monotonic() - began:6.0f} s: {count}/{total} sockets held, "
              f"load {loadavg()}", flush=True)  # fmt: skip


async def drive(
    args: argparse.Namespace, stack: Stack, layout: Plan, gens: LoadGens, workdir: Path
) -> Json:
    """The run's phases; the load generators are killed and reaped on any failure."""
    try:
        return await _phases(args, stack, layout, gens, workdir)
    except BaseException:
        gens.kill()
        for proc in gens.procs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10.0)
        raise


async def _phases(
    args: argparse.Namespace, stack: Stack, layout: Plan, gens: LoadGens, workdir: Path
) -> Json:
    out: Json = {}
    urls = [s.ws_url for s in stack.gateway_services]
    await gens.spawn(loadgen_configs(args, layout, urls), workdir)
    await asyncio.sleep(1.0)
    pids = {**stack.pids(), **gens.pids}
    out["rss_before_kib"] = rss_all(pids)

    print(f"opening {layout.total} sockets ...", flush=True)
    began = out["ramp_began"] = time.monotonic()
    cpu = CpuWindow(pids)
    ticker = asyncio.create_task(progress(stack, began, layout.total))
    try:
        opened = await gens.ask("open", args.ramp_timeout or 300 + 0.02 * layout.total)
    except TimeoutError:  # measure what is open; the report says how many
        print("the ramp timed out: going on with the sockets open now", flush=True)
        opened = await gens.ask("status", 120)
        out["ramp_timed_out"] = True
    finally:
        ticker.cancel()
    out["ramp_cpu"] = cpu.end()
    print(
        f"opened {sum(a['opened'] for a in opened)} in {time.monotonic() - began:.1f} s", flush=True
    )
    await asyncio.sleep(5.0)
    out["held_after_ramp"] = await held_per_gateway(stack)
    out["rss_held_kib"] = rss_all(pids)

    print(f"idle window {args.idle_seconds:.0f} s ...", flush=True)
    out["idle_began"] = time.monotonic()
    cpu = CpuWindow(pids)
    await asyncio.sleep(args.idle_seconds)
    out["idle_cpu"] = cpu.end()

    print(
        f"{args.active} visitors play for {args.active_seconds:.0f} s, with probes ...", flush=True
    )
    await gens.ask("play", 30)
    out["active_began"] = time.monotonic()
    cpu = CpuWindow(pids)
    await asyncio.sleep(args.active_seconds)
    await gens.ask("probes_off", 30)
    out["active_ended"] = time.monotonic()
    out["active_cpu"] = cpu.end()
    out["rss_active_kib"] = rss_all(pids)

    if not args.no_kill:
        victim = stack.gateway_services[layout.victim]
        held = out["held_after_ramp"].get(victim.name)
        before = await held_per_gateway(stack)
        expected = before.get(victim.name) or held
        print(f"kill -9 {victim.name} (holding {expected}) ...", flush=True)
        cpu = CpuWindow({k: v for k, v in pids.items() if k != victim.name})
        out["killed_at"] = time.monotonic()
        victim.kill9()
        out["expected_lost"] = expected
        deadline = out["killed_at"] + args.failover_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            status = await gens.ask("status", 60)
            lost = sum(s["lost"] for s in status)
            recovering = sum(s["recovering"] for s in status)
            print(f"  {time.monotonic() - out['killed_at']:5.1f} s: {lost} resumed or gave up, "
                  f"{recovering} reconnecting", flush=True)  # fmt: skip
            if recovering == 0 and lost >= (expected or 0):
                break
        out["failover_cpu"] = cpu.end()
        out["failover_ended"] = time.monotonic()
        await asyncio.sleep(args.after_seconds)
        out["held_after_kill"] = await held_per_gateway(stack)
        out["rss_after_kill_kib"] = rss_all({k: v for k, v in pids.items() if k != victim.name})
    out["stopped_at"] = time.monotonic()
    print("collecting results ...", flush=True)
    out["answers"] = await gens.ask("result", 300)
    with contextlib.suppress(Exception):
        await gens.close()
    out["opened_answers"] = opened
    return out


def phases(raw: Json) -> list[tuple[str, float, float]]:
    """The run's phases on the machine's monotonic clock, for errors by phase."""
    marks = [("ramp", raw["ramp_began"]), ("idle", raw["idle_began"]),
             ("active", raw["active_began"]), ("between", raw["active_ended"])]  # fmt: skip
    if raw.get("killed_at") is not None:
        marks += [("failover", raw["killed_at"]), ("after failover", raw["failover_ended"])]
    marks.append(("checks", raw["stopped_at"]))
    ends = [at for _, at in marks[1:]] + [float("inf")]
    return [(name, at, end) for (name, at), end in zip(marks, ends, strict=True)]


def summarize(args: argparse.Namespace, layout: Plan, raw: Json, stack: Stack) -> Json:
    answers = raw["answers"]
    a0, a1 = raw["active_began"], raw["active_ended"]
    killed = raw.get("killed_at")
    held = {k: v or 0 for k, v in raw["held_after_ramp"].items()}
    held.update({f"loadgen-{i}": sum(c) for i, c in enumerate(layout.loadgens)})
    press_steady = results.latencies(answers, "press", a0, a1)
    run_phases = phases(raw)
    errs = results.errors(answers, run_phases)
    summary: Json = {
        "ramp": results.ramp(answers),
        "memory_after_ramp": results.per_socket_kib(raw["rss_held_kib"], held),
        "memory_growth_kib_per_socket": results.growth_kib(
            raw["rss_before_kib"], raw["rss_held_kib"], held
        ),
        "rss_mib": {
            k: None if v is None else round(v / 1024, 1) for k, v in raw["rss_held_kib"].items()
        },
        "ramp_cpu": raw["ramp_cpu"],
        "idle_cpu": raw["idle_cpu"],
        "active_cpu": raw["active_cpu"],
        "press_to_reply": press_steady,
        "press_to_reply_by_10s": results.latencies_by_window(answers, "press", a0, a1),
        "start_to_reply": results.latencies(answers, "start", a0, a1),
        "probe_connect_to_first_message": results.latencies_flat(answers, "probe_ms"),
        "errors": errs,
        "loadgen_loop_lags": results.loop_lags(answers, run_phases),
        "transcripts": {
            "checked": sum(a["transcripts"]["checked"] for a in answers),
            "mismatched": sum(a["transcripts"]["mismatched"] for a in answers),
        },
        "conversations_completed": sum(a["conversations_completed"] for a in answers),
        "held_sockets_closed_under_them": results.closes(answers),
        "ramp_timed_out": raw.get("ramp_timed_out", False),
    }
    if killed is not None:
        summary["failover"] = results.failover(answers, killed, raw.get("expected_lost"))
        summary["failover"]["cpu"] = raw["failover_cpu"]
        summary["press_to_reply_during_failover"] = results.latencies(
            answers, "press", killed, raw["failover_ended"]
        )
        summary["press_to_reply_after_failover"] = results.latencies(
            answers, "press", raw["failover_ended"], raw["stopped_at"]
        )
        summary["held_after_kill"] = raw["held_after_kill"]
        summary["rss_after_kill_mib"] = {
            k: None if v is None else round(v / 1024, 1)
            for k, v in raw["rss_after_kill_kib"].items()
        }
        # a socket lost before the kill, or one that never came back, is an error
        f = summary["failover"]
        for kind, count in (("lost_before_kill", f["lost_before_kill"]),
                            ("never_resumed", f["never_resumed"])):  # fmt: skip
            if count:
                errs["by_kind"][kind] = count
                errs["errors"] += count
    p99 = press_steady.get("p99_ms")
    summary["targets"] = {
        "press_p99_le_100ms": None if p99 is None else p99 <= TARGET_PRESS_P99_MS,
        "errors_zero": errs["errors"] == 0 and summary["transcripts"]["mismatched"] == 0,
        "all_held": summary["ramp"]["opened"] == layout.total,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cap = budget()
    try:
        gateways = args.gateways or default_gateways(args.sockets, cap, args.victim_share)
        loadgens = args.loadgens or default_loadgens(args.sockets, args.per_loadgen)
        layout = plan(args.sockets, gateways, loadgens, cap, args.victim_share)
    except PlanError as exc:
        print(f"cannot plan the run: {exc}", file=sys.stderr)
        return 2
    sizes = [sum(r) for r in layout.loadgens]
    print(f"plan: gateways {layout.gateways} (victim {layout.victim}), "
          f"load generators {sizes}, budget {cap}", flush=True)  # fmt: skip

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.tmp_root))
    extra = dict(kv.split("=", 1) for kv in args.env)
    stack = Stack(workdir, gateways, args.processors, args.partitions,
                  max_connections=cap, log_level=args.log_level, extra_env=extra)  # fmt: skip
    gens = LoadGens()
    started_at, wall = datetime.now(UTC), time.monotonic()
    load_at_start = loadavg()
    status = 0
    try:
        stack.start()
        raw = asyncio.run(drive(args, stack, layout, gens, workdir))
        try:
            summary = summarize(args, layout, raw, stack)
        except Exception:  # keep what was measured
            dump = args.out.with_suffix(".raw.json")
            dump.write_bytes(orjson.dumps(raw, default=str))
            print(f"could not summarize; the raw answers are in {dump}", file=sys.stderr)
            raise
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 2
        summary = {}
        raw = {}
    finally:
        # a second Ctrl-C or SIGTERM must not cut the teardown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gens.kill()
        exit_codes = stack.exit_codes()
        problems = stack.problems()
        stack.stop()
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if status:
        print(f"service exit codes {exit_codes}; problems {problems}", file=sys.stderr)
        return status
    doc: Json = {
        "benchmark": "bench.scale",
        "timestamp": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - wall, 1),
        "machine": {
            "nproc": _nproc(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": load_at_start,
            "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        },
        "git": git_state("bench/scale", "gateway", "services", "app"),
        "config": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
        "plan": {
            "gateways": layout.gateways,
            "victim": layout.victim,
            "loadgens": [sum(r) for r in layout.loadgens],
            "budget_per_process": cap,
        },
        "services": {"exit_codes": exit_codes, "log_problems": problems},
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    table = markdown(doc)
    args.md.write_text(table)
    print(table)
    print(f"wrote {args.out} and {args.md}")
    ok = summary["targets"]["errors_zero"] and summary["targets"]["all_held"]
    return 0 if ok else 1


def _nproc() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
