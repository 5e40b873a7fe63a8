"""Phase ``throughput``: sustained deliveries/s of one worker's dispatcher.

In this process: the real :class:`~services.delivery.dispatcher.Dispatcher` on
the embedded mode's SQLite store (deliveries.db) and key store (keys.db), the
real :class:`~services.delivery.webhook.WebhookSender` over
:class:`~services.delivery.guarded_http.GuardedHttp` (the SSRF guard allowing
127.0.0.1), ``N`` deliveries created due before the clock starts, each of a real
lead whose contact details are sealed with its conversation's key (so every
attempt reads the key, opens the blob, builds the payload and signs it, as in
production). The receiver is a subprocess (bench/delivery/receiver.py) that
verifies every signature and answers 200.

The baseline, in the same run, to the same receiver: plain aiohttp POSTs of the
same payload bytes with valid signature headers computed beforehand, with as
many requests in flight as the scenario allows the worker. deliveries/s over
baseline requests/s is what the delivery machinery costs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import aiohttp
import orjson

from bench.procstats import Json, machine_cpu_seconds, process_cpu_seconds
from services.catalog import FlowCatalog
from services.conversation.sealing import AesGcmSealer
from services.delivery import signing
from services.delivery.config import Destination
from services.delivery.dispatcher import Dispatcher, DispatchSettings
from services.delivery.guarded_http import GuardedHttp
from services.delivery.intake import deliveries_for
from services.delivery.metrics import DeliveryMetrics
from services.delivery.payload import lead_payload, payload_bytes
from services.delivery.senders import Sender
from services.delivery.ssrf import AddressGuard
from services.delivery.webhook import WebhookSender
from services.embedded.sqlite_deliveries import SqliteDeliveryStore
from services.embedded.sqlite_keystore import SqliteKeyStore
from tests.support import leads
from tests.support.delivery_rig import SECRET
from tests.unit.flows import quiz

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "http://127.0.0.1:8080"
CHUNK = 500
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Scenario:
    """``destinations`` sites with one webhook each, every one allowing
    ``concurrency`` attempts in flight."""

    destinations: int
    concurrency: int

    @property
    def name(self) -> str:
        return f"{self.destinations}x{self.concurrency}"

    @property
    def in_flight(self) -> int:
        return self.destinations * self.concurrency


def parse_scenarios(text: str) -> list[Scenario]:
    """``"1x4,1x64,16x4"``: destinations x concurrency each."""
    out = []
    for part in text.split(","):
        dests, _, conc = part.strip().partition("x")
        out.append(Scenario(int(dests), int(conc)))
    return out


class ReceiverProcess:
    """bench/delivery/receiver.py in a subprocess: its port, its counts, its CPU."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.delivery.receiver", SECRET],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._line())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the receiver subprocess stopped")
        return line

    def _ask(self, command: str) -> Json:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()
        answer: Json = orjson.loads(self._line())
        return answer

    def stats(self) -> Json:
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def destinations(scenario: Scenario, url: str) -> dict[tuple[str, str], Destination]:
    dests = [
        Destination(f"site{i}", "crm", "webhook", url=url, secrets=(SECRET,), concurrency=c)
        for i, c in enumerate([scenario.concurrency] * scenario.destinations)
    ]
    return {d.key: d for d in dests}


async def make_deliveries(
    store: SqliteDeliveryStore,
    keys: SqliteKeyStore,
    dests: Sequence[Destination],
    count: int,
    now: float,
) -> None:
    """``count`` due deliveries, spread over ``dests``, each of its own sealed lead."""
    contact = orjson.dumps(leads.CONTACT)
    batch = []
    for i in range(count):
        dest = dests[i % len(dests)]
        cid = f"bench-{i:06d}"
        lead = leads.snapshot(cid, site_id=dest.site_id, captured_at=now, started_at=now - 30)
        key = await keys.get_or_create(cid)
        sealed = AesGcmSealer(key).seal(contact, lead.event_id)
        batch += deliveries_for(replace(lead, sealed=sealed), [dest], now)
        if len(batch) >= CHUNK:
            await store.take_in({}, batch, {})
            batch = []
    if batch:
        await store.take_in({}, batch, {})


def _cpu(receiver: ReceiverProcess) -> tuple[float, float, float | None]:
    ours = process_cpu_seconds(os.getpid()) or time.process_time()
    theirs = float(receiver.stats()["cpu_s"])
    return ours, theirs, machine_cpu_seconds()


def _usage(
    before: tuple[float, float, float | None],
    after: tuple[float, float, float | None],
    wall: float,
    count: int,
) -> Json:
    ours, theirs = after[0] - before[0], after[1] - before[1]
    machine = None if after[2] is None or before[2] is None else after[2] - before[2]
    others = None if machine is None else max(0.0, machine - ours - theirs)
    return {
        "worker_cpu_s": round(ours, 3),
        "worker_cores": round(ours / wall, 2),
        "worker_cpu_ms_per_delivery": round(ours / count * 1000, 3) if count else None,
        "receiver_cores": round(theirs / wall, 2),
        "receiver_cpu_ms_per_request": round(theirs / count * 1000, 3) if count else None,
        "other_processes_cores": None if others is None else round(others / wall, 2),
    }


async def run_worker(scenario: Scenario, count: int, receiver: ReceiverProcess, tmp: Path) -> Json:
    receiver.reset()
    store = SqliteDeliveryStore(tmp / "deliveries.db")
    keys = SqliteKeyStore(tmp / "keys.db")
    await store.start()
    await asyncio.to_thread(keys.start)
    dests = destinations(scenario, receiver.url)
    metrics = DeliveryMetrics()
    http = GuardedHttp(AddressGuard((ipaddress.ip_network("127.0.0.1/32"),)))
    senders: dict[str, Sender] = {"webhook": WebhookSender(http)}
    try:
        await make_deliveries(store, keys, list(dests.values()), count, time.time())
        dispatcher = Dispatcher(
            store,
            dests,
            senders,
            keys,
            FlowCatalog([quiz()]),
            PUBLIC_URL,
            metrics,
            DispatchSettings(),
        )
        before, started = _cpu(receiver), time.perf_counter()
        task = asyncio.create_task(dispatcher.run())
        delivered = 0
        while delivered < count:
            await asyncio.sleep(POLL_S)
            delivered = (await store.summary()).counts.get("delivered", 0)
            if time.perf_counter() - started > 600:
                break
        wall = time.perf_counter() - started
        after = _cpu(receiver)
        await dispatcher.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        seen = receiver.stats()
        deferred = {
            reason: metrics.deferred.labels("webhook", reason)._value.get()
            for reason in ("busy", "circuit_open")
        }
        return {
            "deliveries": count,
            "delivered": delivered,
            "wall_s": round(wall, 3),
            "deliveries_per_s": round(delivered / wall, 1),
            "receiver_requests": seen["requests"],
            "receiver_bad_signatures": seen["bad_signatures"],
            "deferred": deferred,
            "cpu": _usage(before, after, wall, delivered),
        }
    finally:
        for sender in senders.values():
            await sender.close()
        await asyncio.to_thread(keys.close)
        await store.close()


async def run_baseline(in_flight: int, count: int, receiver: ReceiverProcess) -> Json:
    """Plain aiohttp POSTs, ``in_flight`` at a time, of pre-signed payloads."""
    receiver.reset()
    doc = lead_payload(leads.snapshot(), quiz(), leads.CONTACT, PUBLIC_URL)
    body = payload_bytes(doc)
    now = int(time.time())
    requests = [
        (
            {
                "content-type": "application/json",
                **signing.headers((SECRET,), f"baseline-{i:06d}", now, body),
            }
        )
        for i in range(count)
    ]
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for headers in requests:
        queue.put_nowait(headers)
    statuses: list[int] = []
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=16)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            headers = queue.get_nowait()
            async with session.post(receiver.url, data=body, headers=headers) as response:
                await response.read()
                statuses.append(response.status)

    async with aiohttp.ClientSession(connector=connector) as session:
        before, started = _cpu(receiver), time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(in_flight)))
        wall = time.perf_counter() - started
        after = _cpu(receiver)
    ok = sum(1 for s in statuses if s == 200)
    return {
        "requests": count,
        "ok": ok,
        "in_flight": in_flight,
        "wall_s": round(wall, 3),
        "requests_per_s": round(ok / wall, 1),
        "cpu": _usage(before, after, wall, ok),
    }


async def run_throughput(scenarios: Sequence[Scenario], count: int, tmp_root: str | None) -> Json:
    receiver = ReceiverProcess()
    out: Json = {"deliveries_per_scenario": count, "scenarios": {}}
    try:
        for scenario in scenarios:
            with tempfile.TemporaryDirectory(prefix="bench-delivery-", dir=tmp_root) as tmp:
                worker = await run_worker(scenario, count, receiver, Path(tmp))
            baseline = await run_baseline(scenario.in_flight, count, receiver)
            ratio = (
                round(worker["deliveries_per_s"] / baseline["requests_per_s"], 3)
                if baseline["requests_per_s"]
                else None
            )
            out["scenarios"][scenario.name] = {
                "destinations": scenario.destinations,
                "concurrency_per_destination": scenario.concurrency,
                "in_flight": scenario.in_flight,
                "worker": worker,
                "baseline": baseline,
                "worker_over_baseline": ratio,
            }
    finally:
        receiver.close()
    return out
