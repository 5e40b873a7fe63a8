"""The DeliveryStore contract (tests/support/delivery_store_contract.py) on the
in-memory fake, the reference; tests/integration/test_delivery_stores.py runs
the same cases on the SQLite and Redis adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from services.delivery.memory_store import MemoryDeliveryStore
from services.delivery.store import DeliveryStore
from tests.support.delivery_store_contract import DeliveryStoreContract


class TestMemoryDeliveryStore(DeliveryStoreContract):
    @pytest.fixture
    def opener(self) -> Callable[[], Awaitable[DeliveryStore]]:
        shared = MemoryDeliveryStore()  # every handle is the one store

        async def open_store() -> DeliveryStore:
            await shared.start()
            return shared

        return open_store
