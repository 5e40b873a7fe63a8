"""Conversation state as bytes, for state stores outside the process (the
distributed processor's table). Versioned like every persisted message."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.codec import MessageError, UnsupportedVersion, from_mapping
from services.conversation.state import ConversationState

STATE_VERSION = 1


def encode_state(state: ConversationState) -> bytes:
    return orjson.dumps({"v": STATE_VERSION, "state": state})


def decode_state(data: bytes) -> ConversationState:
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"conversation state: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("v") != STATE_VERSION:
        version = obj.get("v") if isinstance(obj, dict) else None
        raise UnsupportedVersion(f"conversation state version {version!r} is not supported")
    return from_mapping(ConversationState, obj.get("state"))
