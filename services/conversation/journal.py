"""The command journal's privacy rule: a journaled SubmitLead never holds its
fields in clear, nor an AnswerQuestion a personal answer.

The embedded mode journals every command that produced events beside those
events (``leadflow replay --verify`` re-runs the decider over them). A
SubmitLead's fields are contact details, so they are journaled sealed with the
conversation's own key (the key that seals its LeadCaptured): erasing that key
erases them from the journal too (crypto-shredding). The journal needs no
deterministic sealing (a command is journaled once, with its events), so the
AES-GCM nonce is random and stored with the blob; the associated data
``command:{conversation id}/{seq}`` (no event id can equal it) binds the blob
to its command, so it cannot be moved to another one.

An AnswerQuestion's value is sealed the same way whenever the decision read it
and the answer was not logged in clear (a personal answer, or one refused as
``invalid_answer``, which may have been personal); the sealed value starts with
:data:`SEALED_VALUE`, which no answer frame can carry (control characters are
refused).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import replace

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.commands import AnswerQuestion, Command, SubmitLead
from schemas.events import CommandRejected, Event, LeadCaptured, QuestionAnswered
from services.conversation.sealing import KEY_BYTES, Unsealable

NONCE_BYTES = 12
SEALED_FIELD = "__sealed__"  # not an identifier: no visitor's field can carry the name
SEALED_VALUE = "\x00sealed\x00"  # answer frames refuse control characters


def _label(command: SubmitLead | AnswerQuestion) -> bytes:
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


def answer_read(events: Sequence[Event]) -> bool:
    """Whether the decision that emitted ``events`` read an AnswerQuestion's value."""
    return any(
        isinstance(e, QuestionAnswered)
        or (isinstance(e, CommandRejected) and e.reason == "invalid_answer")
        for e in events
    )


def _answer_in_clear(events: Sequence[Event]) -> bool:
    return any(isinstance(e, QuestionAnswered) and not e.personal for e in events)


def needs_key(command: Command, events: Sequence[Event]) -> bool:
    """True when journaling ``command`` with ``events`` seals its fields with the
    conversation key (and so needs the key, created if it does not exist yet)."""
    if isinstance(command, AnswerQuestion):
        return bool(command.value) and answer_read(events) and not _answer_in_clear(events)
    return isinstance(command, SubmitLead) and fields_read(events)


def _seal_answer(command: AnswerQuestion, events: Sequence[Event], key: bytes | None) -> Command:
    if not command.value or _answer_in_clear(events):
        return command
    if not answer_read(events):
        return replace(command, value="")
    if key is None:
        raise ValueError("journaling a personal answer needs the conversation's key")
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + _aead(key).encrypt(nonce, command.value.encode(), _label(command))
    return replace(command, value=SEALED_VALUE + base64.urlsafe_b64encode(blob).decode())


def seal_for_journal(command: Command, events: Sequence[Event], key: bytes | None) -> Command:
    """``command`` as the journal stores it with ``events``: a SubmitLead whose fields
    the decision read has them sealed; one it refused unread has none (the replay
    refuses it alike), so no key is created for it. Answers alike (a non-personal
    answer stays in clear, as its event has it)."""
    if isinstance(command, AnswerQuestion):
        return _seal_answer(command, events, key)
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
    if isinstance(command, AnswerQuestion):
        return command.value.startswith(SEALED_VALUE)
    return isinstance(command, SubmitLead) and set(command.fields) == {SEALED_FIELD}


def _open_answer(command: AnswerQuestion, key: bytes | None) -> Command:
    if key is None:
        raise Unsealable("the conversation's key is erased")
    try:
        blob = base64.urlsafe_b64decode(command.value.removeprefix(SEALED_VALUE).encode())
        plain = _aead(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _label(command))
        value = plain.decode()
    except Exception as exc:  # InvalidTag, binascii.Error, UnicodeDecodeError
        raise Unsealable("a journaled answer cannot be opened") from exc
    return replace(command, value=value)


def open_from_journal(command: Command, key: bytes | None) -> Command:
    """The command as it was handled; :class:`Unsealable` when its fields cannot be
    opened (the key was erased, or the bytes were changed)."""
    if isinstance(command, AnswerQuestion) and is_sealed(command):
        return _open_answer(command, key)
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
