"""The key layout of the Redis read models
(:class:`~projector.redis_store.RedisReadModel`) and the escaping that lets
SCAN match a prefix literally.

Key layout (``P`` is the prefix, ``leadflow:`` by default; ``{ns}`` a namespace
name such as ``n3``):

=====================================  ======  =============================================
key                                    type    holds
=====================================  ======  =============================================
``P rm:current``                       string  the current namespace's name
``P rm:serial``                        string  INCR counter naming new namespaces ``n1``, ``n2``...
``P rm:{ns}:conv:{cid}``               hash    the conversation view (``view_fields``)
``P rm:{ns}:transcript:{cid}``         list    transcript entries, JSON bytes, in seq order
``P rm:{ns}:lead:{cid}``               hash    the lead (``lead_fields``)
``P rm:{ns}:leads:{site_id}``          zset    member cid, score captured_at
``P rm:{ns}:c:{counter key}``          hash    counters (funnels, daily rollups), HINCRBY
``P rm:{ns}:frontier``                 hash    partition -> next offset held (merged)
=====================================  ======  =============================================

``P key:*`` (the conversation encryption keys of
:class:`~services.distributed.redis_keystore.RedisKeyStore`) share the prefix and
are never touched by the read models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReadModelKeys:
    """The read models' key names under one prefix: the ``pointer``
    (``P rm:current``), the ``serial`` (``P rm:serial``), and the ``root``
    (``P rm:``) that every key of a namespace extends, ``{root}{ns}:...``."""

    root: str
    pointer: str
    serial: str

    @classmethod
    def under(cls, prefix: str) -> ReadModelKeys:
        return cls(f"{prefix}rm:", f"{prefix}rm:current", f"{prefix}rm:serial")


def glob_escape(raw: bytes) -> bytes:
    """``raw`` matched literally by SCAN MATCH."""
    out = bytearray()
    for byte in raw:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)
