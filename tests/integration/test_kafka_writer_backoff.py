"""The transactional writer shortens aiokafka's wait after CONCURRENT_TRANSACTIONS
(a module constant of aiokafka: this fails should an upgrade rename or drop it,
and the sender's retry then reads the value set here)."""

from __future__ import annotations

import inspect

from aiokafka.producer import sender as aiokafka_sender

from services.distributed.kafka_writer import (
    CONCURRENT_TRANSACTIONS_BACKOFF_S,
    shorten_concurrent_transactions_backoff,
)


def test_the_writer_sets_the_backoff_the_sender_uses() -> None:
    before = aiokafka_sender.BACKOFF_OVERRIDE
    aiokafka_sender.BACKOFF_OVERRIDE = 0.02  # aiokafka's own
    try:
        shorten_concurrent_transactions_backoff()
        assert aiokafka_sender.BACKOFF_OVERRIDE == CONCURRENT_TRANSACTIONS_BACKOFF_S < 0.02
        handler = inspect.getsource(aiokafka_sender.AddPartitionsToTxnHandler.handle_response)
        assert "return BACKOFF_OVERRIDE" in handler  # read at call time, from the module
    finally:
        aiokafka_sender.BACKOFF_OVERRIDE = before
