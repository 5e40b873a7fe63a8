"""Time-range arguments (``--from``/``--to``) as the analyst commands and
``load_events`` take them."""

from __future__ import annotations

import argparse
import datetime as dt
import math


def parse_since(raw: str) -> float:
    """Unix seconds, or an ISO 8601 date or time (UTC unless it says otherwise)."""
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise argparse.ArgumentTypeError(f"--from {raw!r}: not a time")
        return seconds
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--from {raw!r}: expected unix seconds or an ISO 8601 date/time"
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
