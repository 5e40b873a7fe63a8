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


def _failure(future: object) -> BaseException | None:
    if not isinstance(future, asyncio.Future) or not future.done() or future.cancelled():
        return None
    return future.exception()


def sender_failure(producer: AIOKafkaProducer) -> BaseException | None:
    """The exception the producer's sender task ended with (None: it runs, was
    cancelled, or ended cleanly), retrieved with the fatal error its transaction
    manager keeps for a ``commit_transaction`` nobody called (a fencing noticed
    while records were sent)."""
    sender = getattr(producer, "_sender", None)
    transactions = getattr(producer, "_txn_manager", None)
    waiters = [getattr(transactions, name, None) for name in ("_transaction_waiter", "_pid_waiter")]
    failures = [_failure(getattr(sender, "_sender_task", None)), *map(_failure, waiters)]
    return next((failure for failure in failures if failure is not None), None)


def retrieve_when_done(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Records handed to a producer whose transaction failed: their failure is
    the transaction's, already handled; retrieve it whenever they end."""
    for future in futures:
        future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def stop_producer(producer: AIOKafkaProducer) -> BaseException | None:
    """``producer.stop()``, then the sender task's failure, retrieved."""
    try:
        await producer.stop()
    finally:
        failure = sender_failure(producer)
    return failure
