"""Lead fields and free-text answers travel through the ``commands`` topic
sealed, never in clear.

The gateway seals a SubmitLead's fields with a key it shares with the
processors (``LEADFLOW_COMMAND_SECRET``); the processor opens them just before
deciding. An AnswerQuestion's value (the gateway cannot know whether the node
calls it personal) is always sealed; it then starts with :data:`SEALED_VALUE`,
which no answer frame can carry. The topic thus holds contact details only as ciphertext for its
retention; the log itself seals them again with the conversation's own key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.commands import AnswerQuestion, Command, SubmitLead

SEALED_FIELD = "__sealed__"  # not an identifier, so no visitor's field can carry the name
SEALED_VALUE = "\x00sealed\x00"  # answer frames refuse control characters
MIN_SECRET_CHARS = 16


def _aead(secret: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"leadflow commands\0" + secret.encode()).digest())


class CommandSealError(ValueError):
    """Sealed fields that cannot be opened: another secret, or tampered bytes."""


class CommandSealer:
    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        """Seals with ``secret``; opens what ``secret`` or any ``previous`` one sealed
        (a rotation: docs/runbook.md)."""
        if any(len(s) < MIN_SECRET_CHARS for s in (secret, *previous)):
            raise ValueError(f"a command secret must be at least {MIN_SECRET_CHARS} characters")
        self._aead, *self._previous = (_aead(s) for s in (secret, *previous))

    def _decrypt(self, blob: bytes, aad: bytes) -> bytes:
        for aead in (self._aead, *self._previous):
            try:
                return aead.decrypt(blob[:12], blob[12:], aad)
            except InvalidTag:
                continue
        raise InvalidTag()

    @staticmethod
    def _aad(command: SubmitLead | AnswerQuestion) -> bytes:
        return f"{command.conversation_id}/{command.seq}".encode()

    def _seal_answer(self, command: AnswerQuestion) -> Command:
        if not command.value:
            return command
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, command.value.encode(), self._aad(command))
        return replace(command, value=SEALED_VALUE + base64.urlsafe_b64encode(blob).decode())

    def _open_answer(self, command: AnswerQuestion) -> Command:
        if not command.value.startswith(SEALED_VALUE):
            return command
        try:
            blob = base64.urlsafe_b64decode(command.value.removeprefix(SEALED_VALUE).encode())
            value = self._decrypt(blob, self._aad(command)).decode()
        except Exception as exc:  # InvalidTag, binascii.Error, UnicodeDecodeError
            raise CommandSealError("a sealed answer cannot be opened") from exc
        return replace(command, value=value)

    def seal(self, command: Command) -> Command:
        if isinstance(command, AnswerQuestion):
            return self._seal_answer(command)
        if not isinstance(command, SubmitLead):
            return command
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, orjson.dumps(command.fields), self._aad(command))
        return replace(command, fields={SEALED_FIELD: base64.urlsafe_b64encode(blob).decode()})

    def open(self, command: Command) -> Command:
        if isinstance(command, AnswerQuestion):
            return self._open_answer(command)
        if not isinstance(command, SubmitLead) or set(command.fields) != {SEALED_FIELD}:
            return command
        try:
            blob = base64.urlsafe_b64decode(command.fields[SEALED_FIELD].encode())
            plain = self._decrypt(blob, self._aad(command))
            fields = orjson.loads(plain)
        except Exception as exc:  # InvalidTag, binascii.Error, JSONDecodeError
            raise CommandSealError("sealed lead fields cannot be opened") from exc
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            raise CommandSealError("sealed lead fields are not a mapping of strings")
        return replace(command, fields=fields)


def command_sealer_from_env(env: Mapping[str, str]) -> CommandSealer:
    """``LEADFLOW_COMMAND_SECRET`` seals and opens; ``LEADFLOW_COMMAND_SECRET_PREVIOUS``
    (commas between several) only opens. ValueError if a secret is missing or short."""
    previous = [s for s in env.get("LEADFLOW_COMMAND_SECRET_PREVIOUS", "").split(",") if s]
    return CommandSealer(env.get("LEADFLOW_COMMAND_SECRET", ""), previous)
