"""The benchmark's receivers: the tests' signature-verifying
:class:`~tests.support.receiver.Receiver`, with the arrival time of each
``webhook-id``, in this process or in a subprocess of its own.

In this process (:class:`TimedReceiver`) it shares the load generator's event
loop, which is light at tens of leads a second. The throughput phase runs it
as a subprocess (``python -m bench.delivery.receiver SECRET``), so that its
CPU is not counted as the worker's: it prints its port, then answers commands
on stdin, one per line (``stats``: a JSON line of counts and its CPU seconds;
``reset``: forget what it saw), and stops at the end of stdin.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiohttp import web

from tests.support.receiver import Receiver


class TimedReceiver(Receiver):
    """A :class:`Receiver` that also keeps when each ``webhook-id`` first arrived
    (``time.time()``, the clock the server stamps ``captured_at`` with)."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.arrived: dict[str, float] = {}

    async def _hook(self, request: web.Request) -> web.Response:
        at = time.time()
        response = await super()._hook(request)
        if response.status == 200:
            self.arrived.setdefault(request.headers["webhook-id"], at)
        return response

    def reset(self) -> None:
        self.arrived.clear()
        self.bodies.clear()
        self.requests.clear()
        self.bad_signatures = 0


async def serve(secret: str) -> None:
    receiver = TimedReceiver(secret)
    await receiver.start()
    print(receiver.port, flush=True)
    try:
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip() or None:
            if line == "reset":
                receiver.reset()
                print("{}", flush=True)
            elif line == "stats":
                stats = {
                    "requests": len(receiver.requests),
                    "delivered_ids": len(receiver.arrived),
                    "bad_signatures": receiver.bad_signatures,
                    "cpu_s": time.process_time(),
                }
                print(orjson.dumps(stats).decode(), flush=True)
    finally:
        await receiver.stop()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
