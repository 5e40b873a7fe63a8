"""Phases ``latency`` and ``outage``: ``leadflow serve`` as a subprocess, real
visitors leaving leads over the WebSocket at a steady pace, and receivers in
this process.

A lead's latency is its arrival at the receiver (``time.time()`` when the
request reached the handler; the first arrival of its ``webhook-id``) minus the
payload's ``captured_at`` (the server stamped the ``LeadCaptured`` event with
the same machine clock; milliseconds). Visitors are an open loop: lead ``i``
starts at ``i / rate`` seconds whatever the earlier ones are doing, so a slow
server does not slow the offered load.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import orjson

from bench.delivery.receiver import TimedReceiver
from bench.embedded.servers import LeadflowServer
from bench.embedded.stats import Snapshot, cpu_usage
from bench.procstats import Json, summarize
from services.delivery.schedule import DEFAULT_STEPS
from tests.support.delivery_rig import SECRET, leave_lead, webhook, write_config

SERVER_ENV = {"LEADFLOW_STARTS_PER_MINUTE": "100000"}
REAL_CIRCUIT_OPEN_S = 30.0
WAIT_POLL_S = 0.05


def captured_at(body: bytes) -> float:
    stamp = orjson.loads(body)["data"]["captured_at"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def latencies_ns(receiver: TimedReceiver, ids: set[str] | None = None) -> dict[str, int]:
    """webhook-id -> first arrival minus captured_at, in ns."""
    out = {}
    for msg_id, at in receiver.arrived.items():
        if ids is None or msg_id in ids:
            out[msg_id] = int((at - captured_at(receiver.bodies[msg_id][0])) * 1e9)
    return out


class Pacer:
    """Leaves leads at ``rate`` per second per site, from now until stopped."""

    def __init__(self, ws_url: str, sites: Mapping[str, float]) -> None:
        self.ws_url = ws_url
        self.sites = sites
        self.sent: dict[str, list[float]] = {site: [] for site in sites}  # start times
        self.errors: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._runners: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._runners = [
            asyncio.create_task(self._pace(site, rate)) for site, rate in self.sites.items()
        ]

    async def stop(self) -> None:
        """Stop starting leads; wait for those on their way."""
        self._stop.set()
        await asyncio.gather(*self._runners)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pace(self, site: str, rate: float) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop.is_set():
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            task = asyncio.create_task(self._one(site, n))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            n += 1

    async def _one(self, site: str, n: int) -> None:
        self.sent[site].append(time.time())
        try:
            await leave_lead(self.ws_url, site, n)
        except Exception as exc:  # counted and kept, never fatal
            self.errors.append(f"{site} #{n}: {exc!r}")


async def until(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(WAIT_POLL_S)
    return True


def latency_result(pacer: Pacer, receiver: TimedReceiver, rate: float, complete: bool) -> Json:
    """What phases (a) and (a') report of one paced site, ``acme``."""
    lat = latencies_ns(receiver)
    return {
        "leads_offered": len(pacer.sent["acme"]),
        "rate_per_s": rate,
        "lead_errors": len(pacer.errors),
        "lead_error_examples": pacer.errors[:5],
        "delivered": len(lat),
        "all_delivered": complete,
        "bad_signatures": receiver.bad_signatures,
        "requests": len(receiver.requests),
        "latency_ms": summarize(list(lat.values())),
    }


async def run_latency(leads: int, rate: float, tmp_root: str | None) -> Json:
    """Phase a: ``leads`` leads at ``rate``/s to one healthy receiver."""
    receiver = TimedReceiver(SECRET)
    await receiver.start()
    with tempfile.TemporaryDirectory(prefix="bench-delivery-", dir=tmp_root) as tmp:
        env = write_config(Path(tmp), {"acme": [webhook("crm", f"{receiver.url}/hook")]})
        server = LeadflowServer(Path(tmp) / "data", {**env, **SERVER_ENV})
        server.start()
        try:
            pacer = Pacer(server.ws_url, {"acme": rate})
            before, started = Snapshot.take(server.pid), time.perf_counter()
            pacer.start()
            await until(lambda: len(pacer.sent["acme"]) >= leads, leads / rate + 30)
            await pacer.stop()
            sent = len(pacer.sent["acme"]) - len(pacer.errors)
            complete = await until(lambda: len(receiver.arrived) >= sent, 30)
            wall = time.perf_counter() - started
            after = Snapshot.take(server.pid)
        finally:
            stopped = server.stop()
            await receiver.stop()
    return {
        **latency_result(pacer, receiver, rate, complete),
        "cpu": cpu_usage(before, after, wall),
        "server_exit": {k: v for k, v in stopped.items() if k != "log"},
    }


def compressed_env(real_outage_s: float, outage_s: float) -> dict[str, str]:
    """The retry steps and circuit rest scaled by ``outage_s / real_outage_s``."""
    scale = outage_s / real_outage_s
    steps = ",".join(f"{s * scale:.4g}" for s in DEFAULT_STEPS)
    return {
        "LEADFLOW_DELIVERY_RETRY_STEPS": steps,
        "LEADFLOW_DELIVERY_CIRCUIT_OPEN_SECONDS": f"{max(0.1, REAL_CIRCUIT_OPEN_S * scale):.4g}",
    }


def per_second(times: list[float], origin: float) -> list[int]:
    """How many of ``times`` fell in each second after ``origin``."""
    if not times:
        return []
    bins = [0] * (int(max(times) - origin) + 1)
    for t in times:
        if t >= origin:
            bins[int(t - origin)] += 1
    return bins


async def run_outage(
    rate: float,
    warmup_s: float,
    outage_s: float,
    real_outage_s: float,
    after_s: float,
    drain_timeout_s: float,
    tmp_root: str | None,
) -> Json:
    """Phase c: site ``down``'s receiver is down for ``outage_s`` while both sites
    keep leaving leads at ``rate``/s each; then it is back."""
    down, healthy = TimedReceiver(SECRET), TimedReceiver(SECRET)
    await down.start()
    await healthy.start()
    schedule = compressed_env(real_outage_s, outage_s)
    with tempfile.TemporaryDirectory(prefix="bench-delivery-", dir=tmp_root) as tmp:
        env = write_config(
            Path(tmp),
            {
                "down": [webhook("crm", f"{down.url}/hook")],
                "healthy": [webhook("crm", f"{healthy.url}/hook")],
            },
        )
        server = LeadflowServer(Path(tmp) / "data", {**env, **SERVER_ENV, **schedule})
        server.start()
        try:
            pacer = Pacer(server.ws_url, {"down": rate, "healthy": rate})
            before, started = Snapshot.take(server.pid), time.perf_counter()
            pacer.start()
            await asyncio.sleep(warmup_s)
            await down.stop()
            outage_started = time.time()
            await asyncio.sleep(outage_s)
            await down.start()
            back = time.time()
            await asyncio.sleep(after_s)
            await pacer.stop()
            sent = {site: len(times) for site, times in pacer.sent.items()}
            complete = await until(
                lambda: (
                    len(down.arrived) >= sent["down"] and len(healthy.arrived) >= sent["healthy"]
                ),
                drain_timeout_s,
            )
            wall = time.perf_counter() - started
            after = Snapshot.take(server.pid)
        finally:
            stopped = server.stop()
            await down.stop()
            await healthy.stop()
    down_lat = latencies_ns(down)
    during = {  # the backlog: leads of the down site captured while it was down
        m for m, bodies in down.bodies.items() if outage_started <= captured_at(bodies[0]) < back
    }
    arrivals = sorted(down.arrived[m] for m in during)
    drained_at = arrivals[-1] if arrivals else None
    drain_s = None if drained_at is None else drained_at - back
    healthy_during = [
        ns
        for msg_id, ns in latencies_ns(healthy).items()
        if outage_started <= captured_at(healthy.bodies[msg_id][0]) <= (drained_at or back)
    ]
    return {
        "rate_per_s_per_site": rate,
        "warmup_s": warmup_s,
        "outage_s": outage_s,
        "real_outage_s": real_outage_s,
        "compression": round(real_outage_s / outage_s, 2),
        "server_env": schedule,
        "leads_offered": sent,
        "lead_errors": len(pacer.errors),
        "lead_error_examples": pacer.errors[:5],
        "all_delivered": complete,
        "bad_signatures": down.bad_signatures + healthy.bad_signatures,
        "down_site": {
            "delivered": len(down.arrived),
            "leads_captured_during_outage": len(during),
            "backlog_drain_s": None if drain_s is None else round(drain_s, 2),
            "backlog_drain_per_s": (
                round(len(during) / drain_s, 2) if drain_s and drain_s > 0 else None
            ),
            "backlog_drain_real_equivalent_s": (
                None if drain_s is None else round(drain_s * real_outage_s / outage_s, 1)
            ),
            "arrivals_per_second_after_back": per_second(arrivals, back),
            "first_arrival_after_back_s": (round(arrivals[0] - back, 2) if arrivals else None),
            "latency_ms_all": summarize(list(down_lat.values())),
            "requests": len(down.requests),
        },
        "healthy_site": {
            "delivered": len(healthy.arrived),
            "latency_ms_during_outage_and_drain": summarize(healthy_during),
            "latency_ms_all": summarize(list(latencies_ns(healthy).values())),
        },
        "cpu": cpu_usage(before, after, wall),
        "server_exit": {k: v for k, v in stopped.items() if k != "log"},
    }
