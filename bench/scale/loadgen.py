"""One load-generator process of the scale run: ``python -m bench.scale.loadgen CONFIG``.

``CONFIG`` is JSON (see :func:`main`): its source address (a loopback address of its
own, so its sockets have a port range of their own), the gateways' URLs, how many
sockets to open on each and how many of them play. The coordinator
(``bench.scale.fleet``) drives it with one JSON command per stdin line; each
command is answered with one JSON line on stdout (logs go to stderr):

* ``open``: open every socket, ``--ramp-concurrency`` at a time, each starting a
  conversation; answered when all are open (or failed for good);
* ``play``: the active visitors start playing, probes start (answered at once);
* ``probes_off``: no new probes;
* ``status``: sockets open, lost and resumed so far;
* ``result``: the players stop, a sample of transcripts is checked, the tallies;
* ``exit`` (or stdin closing: the coordinator is gone): exit at once, the kernel
  closes the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import secrets
import socket
import sys
import time
from typing import Any

import aiohttp
import orjson

from bench.scale.plan import interleave
from bench.scale.visitor import Lost, Tally, Visitor
from services.limits import GC_GEN0_DEFAULT, raise_open_files, tune_collector

Json = dict[str, Any]
OPEN_ATTEMPTS = 8
LAG_TICK_S = 0.1
LAG_KEPT_S = 0.2  # a late tick worth keeping: the instrument's own pause
MAX_LAGS = 5_000
FREEZE_EVERY = 2_000  # sockets opened between two freezes of the collector's old objects


def keep_the_collector_off_held_sockets() -> None:
    """Move what is alive now out of the cyclic collector's sight (``gc.freeze``).

    A load generator is the instrument: a pause of its event loop is counted as
    the server's latency. With CPython's default thresholds, each collection of
    the oldest generation walked every held socket's objects: measured in a
    100k run, 0.5-2.6 s pauses of each load generator every 10-20 s while it
    opened its 16,667 sockets and after, which made the active visitors' p99.
    Frozen objects are still freed by reference counting; only cycles among
    them wait (a few closed sockets' worth, in a bounded run)."""
    gc.freeze()


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2+


def source_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """A client socket whose bind to the load generator's source address leaves
    the port to ``connect`` (``IP_BIND_ADDRESS_NO_PORT``).

    Why: ``bind((address, 0))`` makes the kernel search the whole port range for
    a port no socket on that address holds, under a lock. With ~17,000 sockets
    held per address, that search was 45-54% of a load generator's samples (py-spy)
    while it reconnected the killed gateway's visitors: the instrument, not the
    gateways, set the failover's pace, and its event loop stalled for up to 19 s,
    which the report counted as reply timeouts. ``connect`` picks a port unique
    for the 4-tuple, which is cheap."""
    family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=kind, proto=proto)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    return sock


class LoadGen:
    def __init__(self, config: Json, session: aiohttp.ClientSession) -> None:
        self.cfg = config
        self.session = session
        self.rng = random.Random(config["seed"])
        self.tally = Tally()
        self.urls: list[str] = list(config["urls"])
        order = interleave(config["counts"])
        base, active = int(config["index_base"]), int(config["active"])
        self.visitors = [Visitor(base + i, g, i < active, self.urls) for i, g in enumerate(order)]
        self.gate = asyncio.Semaphore(int(config["ramp_concurrency"]))
        self.opened = 0
        self.open_failed = 0
        self.all_opened = asyncio.Event()
        self.playing = asyncio.Event()
        self.stopping = asyncio.Event()
        self.probing = False
        self.loop_lags: list[tuple[float, float]] = []  # (monotonic, seconds late)
        self.watcher: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ramp_began = 0.0
        self.ramp_ended = 0.0

    # -- opening --------------------------------------------------------------

    def open_all(self) -> None:
        self.ramp_began = time.monotonic()
        if not self.visitors:
            self._opened_one(ok=True)
        self.tasks = [asyncio.create_task(self.life(v)) for v in self.visitors]

    def _opened_one(self, ok: bool) -> None:
        if ok:
            self.opened += 1
        else:
            self.open_failed += 1
        if (self.opened + self.open_failed) % FREEZE_EVERY == 0:
            keep_the_collector_off_held_sockets()
        if self.opened + self.open_failed >= len(self.visitors):
            self.ramp_ended = time.monotonic()
            keep_the_collector_off_held_sockets()
            self.all_opened.set()

    async def _open(self, v: Visitor) -> bool:
        start_id = secrets.token_hex(16)  # the same for every retry: one conversation
        async with self.gate:
            for attempt in range(OPEN_ATTEMPTS):
                began = time.perf_counter()
                try:
                    await v.connect(self.session, v.gateway)
                    await v.start(self.tally, start_id)
                except (aiohttp.ClientError, OSError, TimeoutError, Lost, ValueError) as exc:
                    self.tally.error(f"open_attempt_failed:{type(exc).__name__}", str(exc)[:200])
                    if v.ws is not None:
                        await v.ws.close()
                    await asyncio.sleep(min(8.0, 0.5 * 2**attempt) * self.rng.random())
                    v.flows -= 1  # the same flow again
                    continue
                self.tally.ramp_ms.append((time.perf_counter() - began) * 1000)
                return True
        self.tally.error("open_failed", f"visitor {v.index}")
        return False

    # -- a socket's life ------------------------------------------------------

    async def life(self, v: Visitor) -> None:
        ok = await self._open(v)
        self._opened_one(ok)
        if not ok:
            return
        rng = random.Random(v.index)
        think_lo, think_hi = self.cfg["think_s"]

        async def recover() -> bool:
            return await v.recover(self.session, self.tally, rng, self.stopping)

        while not self.stopping.is_set():
            if v.active and self.playing.is_set():
                await asyncio.sleep(rng.uniform(think_lo, think_hi))
                if self.stopping.is_set():
                    return
                try:
                    await v.step(self.tally, rng, recover)
                except ValueError as exc:  # a start answered by an error: try again
                    self.tally.error("start_failed", str(exc)[:200])
                    v.current = None
                continue
            assert v.ws is not None
            try:
                msg = await v.ws.receive(timeout=1.0 if v.active else None)
            except TimeoutError:
                continue
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.tally.error("unexpected_frame_on_idle_socket", str(msg.data)[:200])
                continue
            if self.stopping.is_set():
                return
            self.tally.closes[f"{msg.type.name} {v.ws.close_code}"] += 1
            if not await recover():
                return

    async def watch_loop(self) -> None:
        """Keep this process's own late ticks: a pause of the load generator is
        counted as the servers' latency (or a reply timeout), so the report
        says when the instrument itself was late (``loop_lags``)."""
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            before = loop.time()
            await asyncio.sleep(LAG_TICK_S)
            late = loop.time() - before - LAG_TICK_S
            if late >= LAG_KEPT_S and len(self.loop_lags) < MAX_LAGS:
                self.loop_lags.append((time.monotonic(), late))

    # -- probes ---------------------------------------------------------------

    async def probes(self) -> None:
        """New visitors while the others are held: connect -> first message."""
        interval, n = float(self.cfg["probe_interval_s"]), 0
        while self.probing and not self.stopping.is_set():
            await asyncio.sleep(interval * (0.5 + self.rng.random()))
            if self.probing:
                self.tasks.append(asyncio.create_task(self._probe(n)))
                n += 1

    async def _probe(self, n: int) -> None:
        survivors = [g for g in range(len(self.urls)) if g != self.cfg["victim"]]
        v = Visitor(10_000_000 + n, survivors[n % len(survivors)], False, self.urls)
        began = time.perf_counter()
        try:
            await v.connect(self.session, v.gateway)
            await v.start(self.tally)
            self.tally.probe_ms.append((time.perf_counter() - began) * 1000)
        except (aiohttp.ClientError, OSError, TimeoutError, Lost, ValueError) as exc:
            self.tally.error(f"probe_failed:{type(exc).__name__}", str(exc)[:200])
        finally:
            if v.ws is not None:
                await v.ws.close()

    # -- checks and answers ---------------------------------------------------

    async def check_transcripts(self, sample: int) -> Json:
        """Resume a sample of held conversations from seq 0 on a fresh socket: the
        transcript must be exactly the messages this visitor saw."""
        held = [v for v in self.visitors if not v.active and v.ws is not None and v.cid]
        resumed = [v for v in held if v.recovered]
        chosen = (resumed[: sample // 2] + held[: sample // 2])[:sample]
        checked = mismatched = 0
        for v in chosen:
            probe = await self._resumed_anywhere(v)
            if probe is None:
                continue
            checked += 1
            if probe.seqs != v.seqs or probe.ack != v.ack:
                mismatched += 1
                self.tally.error(
                    "transcript_mismatch", f"{v.cid}: {probe.seqs}/{probe.ack} vs {v.seqs}/{v.ack}"
                )
        return {"checked": checked, "mismatched": mismatched}

    async def _resumed_anywhere(self, v: Visitor) -> Visitor | None:
        """``v``'s conversation resumed on a fresh socket: on its own gateway, else
        on the next one that takes it (a gateway at its connection cap answers
        503, as it should, and a balancer would send the socket elsewhere)."""
        failure: BaseException | None = None
        for step in range(len(self.urls)):
            gateway = (v.gateway + step) % len(self.urls)
            probe = Visitor(v.index, gateway, True, self.urls, token=v.token, cid=v.cid)
            try:
                await probe.connect(self.session, gateway)
                await probe.resume(self.tally)
                return probe
            except (aiohttp.ClientError, OSError, TimeoutError, Lost, ValueError) as exc:
                failure = exc
            finally:
                if probe.ws is not None:
                    await probe.ws.close()
        assert failure is not None
        self.tally.error(f"transcript_check_failed:{type(failure).__name__}", str(failure))
        return None

    def status(self) -> Json:
        lost = self.tally.lost
        return {
            "open": sum(1 for v in self.visitors if v.ws is not None and not v.ws.closed),
            "opened": self.opened,
            "open_failed": self.open_failed,
            "lost": len(lost),
            "resumed": sum(1 for _, r in lost if r is not None),
            "recovering": sum(1 for v in self.visitors if v.ws is None and v.cid),
        }

    def result(self, transcripts: Json) -> Json:
        t = self.tally
        return {
            **self.status(),
            "pid": os.getpid(),
            "ramp_began": self.ramp_began,
            "ramp_ended": self.ramp_ended,
            "errors": dict(t.errors),
            "examples": t.examples,
            "error_at": [(kind, round(at, 3)) for kind, at in t.error_at],
            "ramp_ms": [round(x, 2) for x in t.ramp_ms],
            "press": [(round(a, 4), round(b, 2)) for a, b in t.press],
            "start": [(round(a, 4), round(b, 2)) for a, b in t.start],
            "probe_ms": [round(x, 2) for x in t.probe_ms],
            "lost_resumed": [(round(a, 4), None if b is None else round(b, 4)) for a, b in t.lost],
            "presses_applied_across_loss": t.presses_applied_across_loss,
            "presses_resent": t.presses_resent,
            "starts_resent": t.starts_resent,
            "closes": dict(t.closes),
            "loop_lags": [(round(a, 3), round(b, 3)) for a, b in self.loop_lags],
            "conversations_completed": t.conversations_completed,
            "transcripts": transcripts,
        }


def answer(payload: Json) -> None:
    sys.stdout.buffer.write(orjson.dumps(payload) + b"\n")
    sys.stdout.buffer.flush()


async def run(config: Json) -> None:
    connector = aiohttp.TCPConnector(
        limit=0,
        local_addr=(config["source_ip"], 0),
        socket_factory=source_socket,
        enable_cleanup_closed=False,
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession(connector=connector) as session:
        gen = LoadGen(config, session)
        gen.watcher = asyncio.create_task(gen.watch_loop())
        probing: asyncio.Task[None] | None = None
        while True:
            line = await reader.readline()
            if not line:
                return  # the coordinator is gone
            cmd = orjson.loads(line).get("cmd")
            if cmd == "open":
                gen.open_all()
                await gen.all_opened.wait()
                answer(
                    {"event": "opened", **gen.status(), "seconds": gen.ramp_ended - gen.ramp_began}
                )
            elif cmd == "play":
                gen.playing.set()
                gen.probing = True
                probing = asyncio.create_task(gen.probes())
                answer({"event": "playing"})
            elif cmd == "probes_off":
                gen.probing = False
                answer({"event": "probes_off"})
            elif cmd == "status":
                answer({"event": "status", **gen.status()})
            elif cmd == "result":
                gen.probing = False
                gen.stopping.set()
                if probing is not None:
                    probing.cancel()
                transcripts = await gen.check_transcripts(int(config["transcript_sample"]))
                answer({"event": "result", **gen.result(transcripts)})
            elif cmd == "exit":
                return


def main() -> None:
    config: Json = orjson.loads(sys.argv[1])
    got = raise_open_files(f"loadgen {config['id']}").soft
    print(f"loadgen {config['id']}: open files {got}", file=sys.stderr, flush=True)
    tune_collector(f"loadgen {config['id']}", GC_GEN0_DEFAULT)  # as the services start
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(config))
    sys.stdout.flush()
    os._exit(0)  # the sockets: the kernel closes them, no 20k close handshakes


if __name__ == "__main__":
    main()
