"""The flow registry's records: what publishing and activating a flow append to the log.

A published version is immutable: the validated document (canonical JSON, its
``version`` field set to the version it was published as), a content hash of the
document without its ``version`` (so publishing the same content twice is one
version), who published it and when. Activating a version for a site (or for
every site: ``site_id`` ``""``) is a record of its own, so a rollback is the
activation of an older version, and the log keeps every change.

A draft (:class:`FlowDrafted`, what a preview plays) is a record of its own: the
validated document of a flow that is not published, so that every process (the
processors that run a preview conversation too) can load it. A draft is never a
version and never active; it is known by its content hash and, in the catalogs
and in ``ConversationStarted.flow_version``, by the reserved negative number
:func:`draft_version` derives from that hash (published versions are >= 1).

In the distributed mode the records live in a compacted topic: :func:`record_key`
gives each published version a key of its own (kept forever), each (site,
flow) activation one key (compaction keeps the last activation) and each draft
one key per content (``draft/{flow}/{hash}``).
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


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowDrafted:
    """A flow document drafted for a preview: validated, not published."""

    flow_id: str
    content_hash: str
    document: Mapping[str, Any]
    drafted_by: str
    drafted_at: float
    type: Literal["FlowDrafted"] = "FlowDrafted"

    @property
    def version(self) -> int:
        return draft_version(self.content_hash)


RegistryRecord = FlowPublished | FlowActivated | FlowDrafted

DRAFT_VERSIONS = 2**31 - 1
"""Draft numbers are -1 .. -DRAFT_VERSIONS: the negative of a published version's range."""


def draft_version(digest: str) -> int:
    """The reserved version number of a draft with content hash ``digest``: negative
    (no published version is), the same in every process and every replay. Two
    drafts of one flow share a number with a chance of about n**2 / 2**32 (n
    drafts); the registry then keeps the first and refuses the second."""
    hex_digits = digest.removeprefix("sha256:")
    return -(1 + int(hex_digits[:16], 16) % DRAFT_VERSIONS)


def is_draft_version(version: int) -> bool:
    return version < 0


def record_at(record: RegistryRecord) -> float:
    """When the record was made."""
    if isinstance(record, FlowPublished):
        return record.published_at
    if isinstance(record, FlowDrafted):
        return record.drafted_at
    return record.activated_at


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
    if isinstance(record, FlowDrafted):
        return f"draft/{record.flow_id}/{record.content_hash}".encode()
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
    if isinstance(record, FlowDrafted):
        return orjson.dumps(
            {
                "type": record.type,
                "v": 1,
                "flow_id": record.flow_id,
                "content_hash": record.content_hash,
                "document": record.document,
                "drafted_by": record.drafted_by,
                "drafted_at": record.drafted_at,
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
        if raw.get("type") == "FlowDrafted":
            document = raw["document"]
            if not isinstance(document, dict):
                raise TypeError("document")
            return FlowDrafted(
                flow_id=_str(raw["flow_id"]),
                content_hash=_hash(raw["content_hash"]),
                document=document,
                drafted_by=_str(raw["drafted_by"]),
                drafted_at=float(raw["drafted_at"]),
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


def _hash(value: object) -> str:
    text = _str(value)
    hex_digits = text.removeprefix("sha256:")
    if len(hex_digits) < 16 or any(c not in "0123456789abcdef" for c in hex_digits):
        raise ValueError("content_hash must be sha256:<hex>")
    return text


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value
