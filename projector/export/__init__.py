"""Export of the event log for analysts: ``leadflow export`` and :func:`load_events`.

:mod:`projector.export.source` is the shared reader (also used by the funnel
report and the off-policy evaluation). Importing this package loads neither
pyarrow nor pandas; ``load_events`` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projector.export.api import load_events

__all__ = ["load_events"]


def __getattr__(name: str) -> Any:
    if name == "load_events":
        from projector.export.api import load_events

        return load_events
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
