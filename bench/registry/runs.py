"""The measuring shell: new visitors over real WebSockets, publishes over the admin
API, and the loop that starts visitors on every gateway after a publish until each
gateway and each processor has greeted one with the new marker.

Times are ``time.monotonic()`` in this process. A visitor's ``sent`` is the moment
it starts connecting (a new page view), ``greeted`` the arrival of the first
message frame answering its ``start``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.registry.core import (
    Json,
    Start,
    all_covered,
    coverage,
    covered,
    greeting_marker,
    nearest_rank,
    since,
    stats_s,
)

FLOW = "solar-quote"
ORIGIN = "http://localhost"
START_TIMEOUT = 10.0


@dataclass
class Target:
    """One arm's stack: its gateways (name -> WebSocket URL), its admin API and
    how a conversation id maps to the processor that served it."""

    gateways: dict[str, str]
    processors: list[str]
    processor_of: Callable[[str], str]
    api: str
    admin_key: str


@dataclass
class Tally:
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text[:300])


async def one_start(http: aiohttp.ClientSession, target: Target, gateway: str) -> Start:
    """A new visitor on ``gateway``: connect, ``start`` the flow, read its greeting, close."""
    sent = time.monotonic()
    async with http.ws_connect(target.gateways[gateway], headers={"Origin": ORIGIN}) as ws:
        frame = {"v": 1, "type": "start", "site": "demo", "flow": FLOW, "context": {}}
        await ws.send_str(orjson.dumps(frame).decode())
        conversation = ""
        while True:
            msg = await ws.receive(timeout=START_TIMEOUT)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed: {msg.type.name} {ws.close_code}")
            body = orjson.loads(msg.data)
            if body["type"] == "session":
                conversation = str(body["conversation_id"])
            elif body["type"] == "message":
                greeted = time.monotonic()
                text = str(body["message"]["text"])
                break
            elif body["type"] == "error":
                raise RuntimeError(f"error frame: {body}")
    if not conversation:
        raise RuntimeError("a message before the session frame")
    return Start(gateway, target.processor_of(conversation), sent, greeted, greeting_marker(text))


async def baseline(target: Target, starts_per_gateway: int, tally: Tally) -> Json:
    """Sequential starts on each gateway with no publish: one start's round trip
    (connect to greeting), overall and per gateway and processor."""
    samples: list[Start] = []
    async with aiohttp.ClientSession() as http:
        for gateway in target.gateways:
            for _ in range(starts_per_gateway):
                try:
                    samples.append(await one_start(http, target, gateway))
                except (OSError, RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
                    tally.error(f"baseline {gateway}: {exc!r}")
    out: Json = {"all": stats_s([s.greeted - s.sent for s in samples])}
    for name in [*target.gateways, *target.processors]:
        mine = [s for s in samples if name in (s.gateway, s.processor)]
        out[name] = stats_s([s.greeted - s.sent for s in mine])
    return out


async def publish(http: aiohttp.ClientSession, target: Target, document: str) -> tuple[int, Json]:
    headers = {"Authorization": f"Bearer {target.admin_key}", "Content-Type": "application/yaml"}
    async with http.post(f"{target.api}/flows", headers=headers, data=document) as response:
        body = orjson.loads(await response.read())
        return response.status, body if isinstance(body, dict) else {"body": body}


async def cover(
    target: Target, mark: str, per_gateway: int, bound: float, tally: Tally
) -> list[Start]:
    """Start visitors continuously, ``per_gateway`` at a time on each gateway, until
    every gateway and processor greeted one with ``mark`` or ``bound`` seconds passed."""
    starts: list[Start] = []
    done = asyncio.Event()
    deadline = time.monotonic() + bound

    async def loop(http: aiohttp.ClientSession, gateway: str) -> None:
        while not done.is_set() and time.monotonic() < deadline:
            try:
                start = await asyncio.wait_for(one_start(http, target, gateway), START_TIMEOUT)
            except (OSError, RuntimeError, TimeoutError, aiohttp.ClientError, KeyError) as exc:
                tally.error(f"{gateway}: {exc!r}")
                await asyncio.sleep(0.05)
                continue
            starts.append(start)
            if covered(coverage(starts, mark, target.gateways, target.processors)):
                done.set()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(
            *(loop(http, gateway) for gateway in target.gateways for _ in range(per_gateway))
        )
    return starts


async def publishes(
    target: Target,
    document: Callable[[int], str],
    marks: list[str],
    previous: str,
    per_gateway: int,
    bound: float,
    gap: float,
    tally: Tally,
) -> list[Json]:
    """Publish ``document(i)`` (greeted with ``marks[i]``) one after the other; after
    each answer, :func:`cover`. ``previous`` is the marker served before the first."""
    rows: list[Json] = []
    async with aiohttp.ClientSession() as http:
        for i, mark in enumerate(marks):
            sent = time.monotonic()
            status, body = await publish(http, target, document(i))
            answered = time.monotonic()
            if status != 201:
                tally.error(f"publish {i}: HTTP {status} {body}")
            starts = await cover(target, mark, per_gateway, bound, tally)
            first = coverage(starts, mark, target.gateways, target.processors)
            after_answer, after_sent = since(first, answered), since(first, sent)
            stale = [s for s in starts if s.marker != mark]
            rows.append(
                {
                    "index": i,
                    "marker": mark,
                    "status": status,
                    "version": body.get("version"),
                    "publish_http_s": round(answered - sent, 4),
                    "first_after_answer_s": after_answer,
                    "first_after_sent_s": after_sent,
                    "all_covered_after_answer_s": all_covered(after_answer),
                    "all_covered_after_sent_s": all_covered(after_sent),
                    "starts": len(starts),
                    "stale_starts": len(stale),
                    # neither the new version nor the one before it: a version went backwards
                    "foreign_starts": sum(1 for s in stale if s.marker != previous),
                }
            )
            previous = mark
            print(
                f"  publish {i + 1}/{len(marks)}: v{body.get('version')} HTTP "
                f"{(answered - sent) * 1000:.0f} ms, all covered "
                f"{_ms(rows[-1]['all_covered_after_answer_s'])} after the answer "
                f"({len(starts)} starts, {len(stale)} stale)",
                flush=True,
            )
            await asyncio.sleep(gap)
    return rows


def _ms(seconds: float | None) -> str:
    return "missed" if seconds is None else f"{seconds * 1000:.0f} ms"


def summary(rows: list[Json], keys: list[str]) -> Json:
    """p50/p95/p99/max over the publishes: all covered (after the answer, after the
    request was sent), each gateway's and processor's first, the publish's HTTP time."""
    out: Json = {
        "all_covered_after_answer": stats_s([r["all_covered_after_answer_s"] for r in rows]),
        "all_covered_after_sent": stats_s([r["all_covered_after_sent_s"] for r in rows]),
        "publish_http": stats_s([r["publish_http_s"] for r in rows]),
    }
    counts = [float(r["starts"]) for r in rows]
    if counts:
        out["starts_per_publish"] = {
            "p50": nearest_rank(counts, 0.5),
            "max": max(counts),
            "total": int(sum(counts)),
        }
    out["first_after_answer"] = {
        k: stats_s([r["first_after_answer_s"].get(k) for r in rows]) for k in keys
    }
    out["stale_starts"] = sum(r["stale_starts"] for r in rows)
    out["foreign_starts"] = sum(r["foreign_starts"] for r in rows)
    out["non_201"] = sum(1 for r in rows if r["status"] != 201)
    return out
