"""Why an export cannot go on, said in words an operator can act on."""

from __future__ import annotations

from schemas.codec import MessageError, UnknownType, UnsupportedVersion


class UnreadableLog(Exception):
    """The log holds a record this reader cannot decode. The message says where
    (partition/offset or SQLite position) and what; it never carries field
    values, so it is safe to print."""


class NoEventLog(Exception):
    """There is no log to read: no SQLite file, or no ``events`` topic."""


def unreadable(where: str, exc: MessageError) -> UnreadableLog:
    """An :class:`UnreadableLog` for a decode failure at ``where``.

    An unknown version or type is not skipped: an upgraded reader exports it,
    so the export stops rather than leave holes in an analyst's data."""
    if isinstance(exc, UnsupportedVersion | UnknownType):
        return UnreadableLog(f"{where}: {exc}; upgrade leadflow to export this log")
    return UnreadableLog(f"{where}: unreadable record ({exc})")
