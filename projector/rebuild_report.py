"""What a rebuild of the read models (``leadflow replay``) did."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RebuildReport:
    namespace: str  # the namespace readers read now
    previous: str  # the namespace it replaced (dropped)
    events: int  # events read from the log
    conversations: int  # conversations in the new namespace
    leads: int  # leads in the new namespace
    seconds: float
