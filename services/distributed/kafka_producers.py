"""Stopping an aiokafka producer without leaving an error in the logs.

A transactional producer that another one fenced (the registry's writers at a
concurrent start, a partition writer after a rebalance, a standby policy
service) ends its background sender task with ``ProducerFenced`` and sets the
same error on its transaction manager's waiter. ``AIOKafkaProducer.stop`` only
awaits the sender task while it still runs, and only a commit awaits the
waiter, so their exceptions are never retrieved, and asyncio logs "Future
exception was never retrieved" with a traceback when they are collected: an
error line, at every start of a busy cluster, for what the caller has already
handled. :func:`stop_producer` collects them (aiokafka's private attributes,
read defensively: a version without them collects nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer


def retrieve_when_done(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Records handed to a producer whose transaction failed: their failure is
    the transaction's, already handled; retrieve it whenever they end."""
    for future in futures:
        future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def stop_producer(producer: AIOKafkaProducer) -> None:
    """``producer.stop()``, then retrieve the failure its sender task ended with
    and the fatal error its transaction manager keeps for a commit nobody
    called (a fencing noticed while records were sent)."""
    try:
        await producer.stop()
    finally:
        sender = getattr(producer, "_sender", None)
        transactions = getattr(producer, "_txn_manager", None)
        for future in (
            getattr(sender, "_sender_task", None),
            getattr(transactions, "_transaction_waiter", None),
            getattr(transactions, "_pid_waiter", None),
        ):
            if isinstance(future, asyncio.Future) and future.done():
                _retrieve(future)
