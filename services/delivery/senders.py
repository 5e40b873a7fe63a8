"""The port each destination type's adapter implements.

A sender makes one attempt and says how it went as a
:class:`~services.delivery.schedule.Result`; it never raises (a timeout, a
refused connection or an address the SSRF guard refuses is a ``retry``
result with a short detail that names no personal data and no secret). It
is given the payload both as the document and as its canonical bytes, so a
webhook posts exactly the bytes every retry posts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from services.delivery.config import Destination
from services.delivery.model import Delivery
from services.delivery.schedule import Result

ATTEMPT_TIMEOUT_SECONDS = 15.0


class Sender(Protocol):
    async def send(
        self,
        destination: Destination,
        delivery: Delivery,
        payload: Mapping[str, Any],
        body: bytes,
        now: float,
    ) -> Result: ...

    async def close(self) -> None: ...
