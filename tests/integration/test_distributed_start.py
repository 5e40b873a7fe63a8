"""A ``start`` retried after a timeout makes one conversation, not two.

Regression: while a processor was frozen, a visitor's ``start`` timed out
(``unavailable``) but was applied once the processor came back; the widget's
retry then created a second conversation, and during outages up to 24% of
conversations were start-only orphans inflating the funnel's "started". A
retry now carries the first attempt's ``start_id``, which names the same
conversation on every gateway.
"""

from __future__ import annotations

import asyncio
import secrets

from schemas.batches import decode_batch
from tests.support.distributed import Cluster, read_topic
from tests.support.visitor import Visitor


async def started_conversations(cluster: Cluster) -> list[str]:
    records = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
    return [
        event.conversation_id
        for _, _, value in records
        for event in decode_batch(value).events
        if event.type == "ConversationStarted"
    ]


async def start_until_session(url: str, frame: dict[str, object]) -> dict[str, object]:
    """Retry like the widget: the same frame until a session comes back."""
    for _ in range(30):
        visitor = await Visitor.connect(url)
        try:
            await visitor.send(frame)
            reply = await visitor.recv(wait=15.0)
            if reply["type"] == "session":
                return reply
            assert reply["type"] == "error" and reply["retryable"], reply
        finally:
            await visitor.close()
        await asyncio.sleep(0.5)
    raise AssertionError("no session after 30 attempts")


async def test_a_start_that_timed_out_and_was_applied_later_is_not_doubled(
    cluster: Cluster,
) -> None:
    processor = cluster.processor().start()
    first, second = cluster.gateway(0).start(), cluster.gateway(1).start()
    processor.wait_log("Worker ready")
    first.wait_ready()
    second.wait_ready()
    frame = {"type": "start", "v": 1, "site": "demo", "flow": "solar-quote"}
    frame["start_id"] = secrets.token_hex(16)

    processor.freeze()
    try:
        visitor = await Visitor.connect(first.ws_url)
        await visitor.send(frame)
        timed_out = await visitor.recv(wait=15.0)  # the gateway's 5 s command timeout
        await visitor.close()
    finally:
        processor.thaw()
    assert timed_out["type"] == "error" and timed_out["code"] == "unavailable", timed_out

    session = await start_until_session(second.ws_url, frame)  # the other gateway
    again = await start_until_session(first.ws_url, frame)
    assert again["conversation_id"] == session["conversation_id"]
    await asyncio.sleep(1.0)  # anything still in flight reaches the log
    assert await started_conversations(cluster) == [session["conversation_id"]]
