"""The coordinator's side of the load generators: each is a ``python -m
bench.scale.loadgen CONFIG`` subprocess (see that module for the commands), spawned
with the JSON config ``loadgen_configs`` builds and driven by ``LoadGens``: one JSON
command per stdin line, answered by one JSON event per stdout line (``ANSWERS``: the
event that answers each command; an answer to an earlier command that timed out is
skipped). Its stderr goes to ``loadgen-<id>.log`` in the run's work directory.

Why several processes, each on a loopback address of its own: a process holds at most
the open-files budget of sockets, and one source address has its own ~28k ephemeral
ports. The sockets are split evenly over them, each with the same share of every
gateway (``Plan.loadgens``), the active visitors and the ramp concurrency split
likewise. ``LoadGens.kill`` works without an event loop, so the teardown can reap
them after an interrupted ``asyncio.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.scale.plan import Plan, spread

Json = dict[str, Any]
ANSWERS = {"open": "opened", "play": "playing", "probes_off": "probes_off",
           "status": "status", "result": "result"}  # fmt: skip


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
    actives = spread(args.active, len(layout.loadgens))
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
