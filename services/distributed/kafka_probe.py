"""Does Kafka answer? A metadata round trip, not a TCP connect.

A frozen broker (SIGSTOP, a hung JVM, a network partition that keeps the port
open) still accepts TCP connections from the kernel, so a connect-only check
called it up while nothing was served. Readiness of every service that needs
Kafka asks this instead."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from services.distributed.settings import KafkaSettings


class KafkaProbe:
    """``await probe.answers()``: True when the cluster answered a metadata request
    within ``timeout`` seconds. Connects lazily; :meth:`close` when done."""

    def __init__(self, settings: KafkaSettings, timeout: float = 2.0) -> None:
        self._settings = settings
        self._timeout = timeout
        self._client: AIOKafkaClient | None = None

    async def answers(self) -> bool:
        try:
            return await asyncio.wait_for(self._ask(), self._timeout)
        except (TimeoutError, KafkaError, OSError):
            await self.close()  # a fresh client next time: the old one may be stuck
            return False

    async def _ask(self) -> bool:
        if self._client is None:
            client = AIOKafkaClient(**self._settings.client_kwargs())
            await client.bootstrap()
            self._client = client
        return bool(await self._client.force_metadata_update())

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
