"""The command journal's privacy rule: a journaled SubmitLead never holds its
fields in clear.

The embedded mode journals every command that produced events beside those
events (``leadflow replay --verify`` re-runs the decider over them). A
SubmitLead's fields are contact details, so they are journaled sealed with the
conversation's own key (the key that seals its LeadCaptured): erasing that key
erases them from the journal too (crypto-shredding). The journal needs no
deterministic sealing (a command is journaled once, with its events), so the
AES-GCM nonce is random and stored with the blob; the associated data
``command:{conversation id}/{seq}`` (no event id can equal it) binds the blob
to its command, so it cannot be moved to another one.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import replace

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.commands import Command, SubmitLead
from schemas.events import CommandRejected, Event, LeadCaptured
from services.conversation.sealing import KEY_BYTES, Unsealable

NONCE_BYTES = 12
SEALED_FIELD = "__sealed__"  # not an identifier: no visitor's field can carry the name


def _label(command: SubmitLead) -> bytes:
    return f"command:{command.conversation_id}/{command.seq}".encode()


def _aead(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise ValueError("a conversation key is 32 bytes")
    return AESGCM(key)


def fields_read(events: Sequence[Event]) -> bool:
    """Whether the decision that emitted ``events`` read a SubmitLead's fields: only
    a lead it captured or refused as invalid did (a lead on the wrong node, on a
    completed conversation or out of order is refused before its fields are read)."""
    return any(
        isinstance(e, LeadCaptured)
        or (isinstance(e, CommandRejected) and e.reason == "invalid_lead")
        for e in events
    )


def needs_key(command: Command, events: Sequence[Event]) -> bool:
    """True when journaling ``command`` with ``events`` seals its fields with the
    conversation key (and so needs the key, created if it does not exist yet)."""
    return isinstance(command, SubmitLead) and fields_read(events)


def seal_for_journal(command: Command, events: Sequence[Event], key: bytes | None) -> Command:
    """``command`` as the journal stores it with ``events``: a SubmitLead whose fields
    the decision read has them sealed; one it refused unread has none (the replay
    refuses it alike), so no key is created for it."""
    if not isinstance(command, SubmitLead):
        return command
    if not fields_read(events):
        return replace(command, fields={})
    if key is None:
        raise ValueError("journaling a SubmitLead needs the conversation's key")
    label = _label(command)
    plain = orjson.dumps(command.fields, option=orjson.OPT_SORT_KEYS)
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + _aead(key).encrypt(nonce, plain, label)
    return replace(command, fields={SEALED_FIELD: base64.urlsafe_b64encode(blob).decode()})


def is_sealed(command: Command) -> bool:
    return isinstance(command, SubmitLead) and set(command.fields) == {SEALED_FIELD}


def open_from_journal(command: Command, key: bytes | None) -> Command:
    """The command as it was handled; :class:`Unsealable` when its fields cannot be
    opened (the key was erased, or the bytes were changed)."""
    if not isinstance(command, SubmitLead) or not is_sealed(command):
        return command
    if key is None:
        raise Unsealable("the conversation's key is erased")
    label = _label(command)
    try:
        blob = base64.urlsafe_b64decode(command.fields[SEALED_FIELD].encode())
        plain = _aead(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], label)
        fields = orjson.loads(plain)
    except Exception as exc:  # InvalidTag, binascii.Error, JSONDecodeError
        raise Unsealable("journaled lead fields cannot be opened") from exc
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise Unsealable("journaled lead fields are not a mapping of strings")
    return replace(command, fields=fields)
