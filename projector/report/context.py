"""What a report was asked for, beside what the log holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Context:
    """What the report was asked for, beside what the log holds."""

    flow_id: str
    since: float | None
    until: float | None
    site_id: str | None
    origin: str  # "SQLite log in .leadflow" / "Kafka topic ..."
    versions: Mapping[int, int]  # every version of the flow in range: conversations
    generated_at: float
