"""The flow registry's records: what publishing and activating a flow append to the log.

A published version is immutable: the validated document (canonical JSON, its
``version`` field set to the version it was published as), a content hash of the
document without its ``version`` (so publishing the same content twice is one
version), who published it and when. Activating a version for a site (or for
every site: ``site_id`` ``""``) is a record of its own, so a rollback is the
activation of an older version, and the log keeps every change.

In the distributed mode the records live in a compacted topic: :func:`record_key`
gives each published version a key of its own (kept forever) and each (site,
flow) activation one key (compaction keeps the last activation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

ALL_SITES = ""  # an activation for every site without one of its own


class UnreadableRegistryRecord(ValueError):
    """A registry record that does not decode (a newer format, or corrupted bytes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowPublished:
    flow_id: str
    version: int
    document: Mapping[str, Any]
    content_hash: str
    published_by: str
    published_at: float
    type: Literal["FlowPublished"] = "FlowPublished"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowActivated:
    flow_id: str
    version: int
    site_id: str
    activated_by: str
    activated_at: float
    type: Literal["FlowActivated"] = "FlowActivated"


RegistryRecord = FlowPublished | FlowActivated


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """One byte string per document: keys sorted, no whitespace."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def content_hash(document: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical document without its ``version``."""
    body = {k: v for k, v in document.items() if k != "version"}
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


def record_key(record: RegistryRecord) -> bytes:
    """The record's key in the compacted topic."""
    if isinstance(record, FlowPublished):
        return f"published/{record.flow_id}/{record.version}".encode()
    return f"active/{record.site_id or '*'}/{record.flow_id}".encode()


def encode_record(record: RegistryRecord) -> bytes:
    if isinstance(record, FlowPublished):
        return orjson.dumps(
            {
                "type": record.type,
                "v": 1,
                "flow_id": record.flow_id,
                "version": record.version,
                "document": record.document,
                "content_hash": record.content_hash,
                "published_by": record.published_by,
                "published_at": record.published_at,
            },
            option=orjson.OPT_SORT_KEYS,
        )
    return orjson.dumps(
        {
            "type": record.type,
            "v": 1,
            "flow_id": record.flow_id,
            "version": record.version,
            "site_id": record.site_id,
            "activated_by": record.activated_by,
            "activated_at": record.activated_at,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def decode_record(data: bytes) -> RegistryRecord:
    """The record in ``data``; :class:`UnreadableRegistryRecord` if it is not one."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UnreadableRegistryRecord(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("v") != 1:
        raise UnreadableRegistryRecord("not a version 1 registry record")
    try:
        if raw.get("type") == "FlowPublished":
            document = raw["document"]
            if not isinstance(document, dict):
                raise TypeError("document")
            return FlowPublished(
                flow_id=_str(raw["flow_id"]),
                version=_int(raw["version"]),
                document=document,
                content_hash=_str(raw["content_hash"]),
                published_by=_str(raw["published_by"]),
                published_at=float(raw["published_at"]),
            )
        if raw.get("type") == "FlowActivated":
            return FlowActivated(
                flow_id=_str(raw["flow_id"]),
                version=_int(raw["version"]),
                site_id=_str(raw["site_id"]),
                activated_by=_str(raw["activated_by"]),
                activated_at=float(raw["activated_at"]),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise UnreadableRegistryRecord(f"a field is missing or of the wrong type: {exc}") from None
    raise UnreadableRegistryRecord(f"unknown record type {raw.get('type')!r}")


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value
