"""The whole run, in order: warm-up; the raw floor at one client; for each visitor
count, each mode: Leadflow, then the raw and relay round trips under the same pace;
the processor alone; and a py-spy'd run (not judged). Results go into ``out`` as
they come, so an interrupted run still leaves what it measured."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path

import aiohttp

from bench.kafka import burst, profiling, stages
from bench.kafka.config import WARMUP_ROUND_S, Config, settled
from bench.kafka.pacing import Pace, Recorder
from bench.kafka.raw import RawBus, create_topics
from bench.kafka.runs import LeadflowTarget, raw_run, start_relay, stop_process
from bench.kafka.stack import Stack
from bench.kafka.sysstats import CpuSnapshot, Json, cpu_cores, cpu_ms_per, summarize
from bench.kafka.visitors import Visitor, connect_all, prime
from services.distributed.settings import KafkaSettings

WARMUP_RATE = 300.0


def _line(label: str, run: Json) -> None:
    lat = run["latency_ms"].get("press", {})
    errors = sum(run["errors"].values())
    print(
        f"  {label:<34} {run['presses_per_s']:>8.1f}/s  p50 {lat.get('p50_ms', '-'):>8} ms"
        f"  p99 {lat.get('p99_ms', '-'):>8} ms  errors {errors}",
        flush=True,
    )


class Suite:
    def __init__(self, cfg: Config, stack: Stack, out: Json, workdir: Path) -> None:
        self.cfg, self.stack, self.out, self.workdir = cfg, stack, out, workdir
        self.pids = stack.pids()
        self.pool: list[Visitor] = []
        self.raw_bus: RawBus | None = None
        self.relay_bus: RawBus | None = None
        self.relay_proc: subprocess.Popen[bytes] | None = None
        self.settings = KafkaSettings(
            bootstrap=stack.bootstrap,
            prefix=stack.prefix,
            partitions=cfg.partitions,
            reply_partitions=cfg.reply_partitions,
        )

    def _visitors(self, n: int) -> list[Visitor]:
        gateways = self.stack.gateways
        while len(self.pool) < n:
            i = len(self.pool)
            rng = random.Random(self.cfg.seed * 1_000_003 + i)
            self.pool.append(Visitor(i, gateways[i % len(gateways)].ws_url, rng))
        return self.pool[:n]

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            ports = [g.port for g in self.stack.gateways if g.port is not None]
            target = LeadflowTarget(session, ports, self.pids)
            try:
                await self._warmup(target)
                await self._start_floors()
                await self._floor_single(target)
                for n in self.cfg.visitors:
                    await self._step(target, n)
                if self.cfg.burst > 0:
                    await self._processor_alone()
                if self.cfg.profile:
                    await self._profile(target)
                await self._stages()
            finally:
                await asyncio.gather(*(v.close() for v in self.pool))
                for bus in (self.raw_bus, self.relay_bus):
                    if bus is not None:
                        await bus.stop()
                stop_process(self.relay_proc)

    async def _connect(self, target: LeadflowTarget, n: int) -> list[Visitor]:
        """Open the sockets of ``n`` visitors and start their first conversations
        (not measured: a step begins with every visitor in a conversation)."""
        visitors = self._visitors(n)
        rec = Recorder()
        started = time.monotonic()
        live = await connect_all(visitors, target.session, rec)
        connected = time.monotonic()
        primed = await prime(visitors, rec)
        self.out["connects"].append(
            {
                "visitors": n,
                "open": len(live),
                "connect_s": round(connected - started, 2),
                "connect_ms": summarize(rec.series.get("connect", [])),
                "first_starts": primed,
                "first_starts_s": round(time.monotonic() - connected, 2),
                "errors": dict(rec.errors),
                "error_examples": rec.examples,
            }
        )
        return visitors

    async def _warmup(self, target: LeadflowTarget) -> None:
        """Paced rounds until the broker's CPU per command settles (or the cap):
        a fresh broker's JIT compiles for minutes, and CPU measured meanwhile is
        the JVM's start, not the path's (3.6 ms per command in the first 8 s
        against 0.8 ms once warm, in one measured run)."""
        n = min(50, max(self.cfg.visitors))
        visitors = await self._connect(target, n)
        cap = self.cfg.warmup_seconds
        print(
            f"warm-up: {n} visitors, rounds of {WARMUP_ROUND_S:.0f} s, at most {cap:.0f} s",
            flush=True,
        )
        rounds: list[Json] = []
        errors: dict[str, int] = {}
        run: Json = {}
        spent = 0.0
        while spent < cap:
            seconds = min(WARMUP_ROUND_S, cap - spent)
            run = await target.run(visitors, Pace("paced", n, WARMUP_RATE), seconds)
            spent += seconds
            broker = run["cpu_ms_per_command"].get("broker")
            rounds.append({"seconds": round(spent, 1), "broker_cpu_ms_per_command": broker})
            for code, count in run["errors"].items():
                errors[code] = errors.get(code, 0) + count
            _line(f"warm-up to {spent:.0f} s (broker {broker} ms/cmd)", run)
            if settled([r["broker_cpu_ms_per_command"] for r in rounds]):
                break
        self.out["warmup"] = {**run, "errors": errors, "rounds": rounds}

    async def _start_floors(self) -> None:
        prefix, cfg = self.stack.prefix, self.cfg
        names = [f"{prefix}raw", f"{prefix}relay-in", f"{prefix}relay-events", f"{prefix}relay-out"]
        if not (cfg.raw or cfg.relay):
            return
        await create_topics(self.stack.bootstrap, names)
        opts = {"linger_ms": cfg.linger_ms, "fetch_max_wait_ms": cfg.fetch_max_wait_ms}
        if cfg.raw:
            self.raw_bus = RawBus(self.stack.bootstrap, names[0], names[0], **opts)
            await self.raw_bus.start()
        if cfg.relay:
            proc = start_relay(
                self.stack.bootstrap, (names[1], names[2], names[3]), self.workdir / "relay.log"
            )
            self.relay_proc = proc
            self.pids["relay"] = proc.pid
            self.relay_bus = RawBus(self.stack.bootstrap, names[1], names[3], **opts)
            await self.relay_bus.start()

    async def _floor_single(self, target: LeadflowTarget) -> None:
        """One client, closed loop: Leadflow (one visitor), raw and relay, unloaded."""
        single = Pace("saturated", 1)
        print("1 client, closed loop:", flush=True)
        run = await target.run(self._visitors(1), single, self.cfg.raw_seconds)
        run["visitors"] = 1
        self.out["leadflow_single"] = run
        _line("leadflow 1 visitor", run)
        for name, bus in (("raw", self.raw_bus), ("relay", self.relay_bus)):
            if bus is not None:
                run = await raw_run(bus, single, self.cfg.raw_seconds, self.cfg.seed, self.pids)
                self.out[name]["single"] = run
                _line(f"{name} 1 client", run)

    async def _step(self, target: LeadflowTarget, n: int) -> None:
        print(f"{n} visitors: connecting ...", flush=True)
        visitors = await self._connect(target, n)
        for mode in self.cfg.modes:
            pace = Pace(mode, n, self.cfg.rate)
            seconds = self.cfg.paced_seconds if mode == "paced" else self.cfg.saturated_seconds
            run = await target.run(visitors, pace, seconds)
            run["visitors"] = n
            self.out["leadflow"].append(run)
            _line(f"leadflow {mode} N={n}", run)
            for name, bus in (("raw", self.raw_bus), ("relay", self.relay_bus)):
                if bus is None:
                    continue
                floor = await raw_run(bus, pace, self.cfg.raw_seconds, self.cfg.seed, self.pids)
                floor["visitors"] = n
                self.out[name]["runs"].append(floor)
                _line(f"{name} {mode} N={n}", floor)

    async def _stages(self) -> None:
        """Split each Leadflow run's presses into stages (stages.py) from the topics."""
        print("reading the topics for the per-stage breakdown ...", flush=True)
        log = await stages.read_log(self.settings)
        self.out["topic_records"] = await stages.topic_sizes(
            self.stack.bootstrap, self.stack.prefix
        )
        singles = [self.out.get(k) or {} for k in ("warmup", "leadflow_single")]
        for run in [*singles, *self.out["leadflow"]]:
            traces = run.pop("_traces", None)
            if traces is not None:
                run["stages_ms"] = stages.breakdown(traces, log)

    async def _processor_alone(self) -> None:
        client = burst.BurstClient(self.settings, self.cfg.burst_reply_partition)
        rng = random.Random(self.cfg.seed)
        await client.start()
        try:
            print(f"processor alone: {self.cfg.burst} starts, then presses", flush=True)
            before = CpuSnapshot.take(self.pids)
            starts, replies = await client.run(
                burst.starts(self.cfg.burst, client.reply_partition, rng)
            )
            starts["cpu_cores"] = cpu_cores(before, CpuSnapshot.take(self.pids))
            starts["processor_cpu_ms_per_command"] = cpu_ms_per(
                starts["cpu_cores"], "processor", starts["commands_per_s"]
            )
            self.out["processor_alone"]["starts"] = starts
            print(f"  starts:  {starts['commands_per_s']} commands/s", flush=True)
            before = CpuSnapshot.take(self.pids)
            presses, _ = await client.run(burst.presses(replies, client.reply_partition, rng))
            presses["cpu_cores"] = cpu_cores(before, CpuSnapshot.take(self.pids))
            presses["processor_cpu_ms_per_command"] = cpu_ms_per(
                presses["cpu_cores"], "processor", presses["commands_per_s"]
            )
            self.out["processor_alone"]["presses"] = presses
            print(f"  presses: {presses['commands_per_s']} commands/s", flush=True)
            self.out["processor_alone"]["unreadable_replies"] = client.unreadable
        finally:
            await client.stop()

    async def _profile(self, target: LeadflowTarget) -> None:
        if not profiling.available():
            self.out["profile"] = {"skipped": "py-spy is not on the PATH"}
            return
        n, seconds = self.cfg.profile_visitors, self.cfg.profile_seconds
        visitors = await self._connect(target, n)
        names = ["processor", *(g.name for g in self.stack.gateways[:1])]
        print(f"py-spy: {', '.join(names)} during a saturated run of {n} visitors", flush=True)
        paths = {name: self.workdir / f"py-spy-{name}.txt" for name in names}
        procs = []
        for name in names:
            pid = self.pids.get(name)
            if pid is not None:
                procs.append(await profiling.record(pid, seconds, paths[name]))
        await asyncio.sleep(0.5)
        run = await target.run(visitors, Pace("saturated", n), seconds + 1.0)
        errors = [(await p.communicate())[1].decode(errors="replace")[-500:] for p in procs]
        self.out["profile"] = {
            "note": "profiled run: py-spy takes CPU from the same cores; not judged",
            "run": {k: run[k] for k in ("presses_per_s", "latency_ms", "errors", "cpu_cores")},
            "py_spy_errors": [e for e in errors if "Error" in e],
            **{name: profiling.summarize(path) for name, path in paths.items()},
        }


def empty_results() -> Json:
    return {
        "connects": [],
        "leadflow_single": None,
        "leadflow": [],
        "raw": {"single": None, "runs": []},
        "relay": {"single": None, "runs": []},
        "processor_alone": {},
    }
