"""Crypto-shredding: lead details are sealed with a per-conversation key.

The key lives outside the event log (a key store adapter); the log only ever
holds the sealed blob. Deleting the key erases the details everywhere the log
was copied. Sealing is deterministic for a given (key, event id, plaintext):
the nonce is derived from the event id, which is unique per key, so
reprocessing a command reproduces the very same event bytes.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32


class Sealer(Protocol):
    def seal(self, plaintext: bytes, event_id: str) -> str: ...


class Unsealable(Exception):
    """The blob cannot be opened: the key was erased or the data is corrupt."""


def _nonce(event_id: str) -> bytes:
    return hashlib.sha256(event_id.encode()).digest()[:12]


class AesGcmSealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a conversation key is 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, event_id: str) -> str:
        blob = self._aead.encrypt(_nonce(event_id), plaintext, event_id.encode())
        return base64.urlsafe_b64encode(blob).decode()

    def open(self, sealed: str, event_id: str) -> bytes:
        try:
            blob = base64.urlsafe_b64decode(sealed.encode())
            return self._aead.decrypt(_nonce(event_id), blob, event_id.encode())
        except Exception as exc:  # InvalidTag, binascii.Error
            raise Unsealable("lead details cannot be opened") from exc


class KeyRequired(Exception):
    """Raised by :class:`NoSealer`: the decision needs the conversation's key."""


class NoSealer:
    """The sealer to decide with first: most commands never seal anything, and the
    shell fetches (or creates) a key only when a decision raises KeyRequired, so
    keys exist only for conversations that really captured a lead."""

    def seal(self, plaintext: bytes, event_id: str) -> str:
        raise KeyRequired()

    def open(self, sealed: str, event_id: str) -> bytes:
        """A reply that shows a personal value (a template) needs the key too."""
        raise KeyRequired()
