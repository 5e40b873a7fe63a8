"""Crypto-shredding: sealing lead details with a per-conversation key."""

from __future__ import annotations

import base64

import pytest

from schemas.events import event_id
from services.conversation.sealing import AesGcmSealer, KeyRequired, NoSealer, Unsealable

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PLAIN = b'{"email":"ann@example.com","name":"Ann"}'
EID = event_id("conv-s", 7)


def test_seal_then_open_round_trips() -> None:
    """What was sealed under (key, event id) must open to the same bytes."""
    sealed = AesGcmSealer(KEY).seal(PLAIN, EID)
    assert AesGcmSealer(KEY).open(sealed, EID) == PLAIN


def test_sealed_text_is_urlsafe_base64_without_the_plaintext() -> None:
    """The sealed blob must be ASCII text safe for JSON/URLs and hide the details."""
    sealed = AesGcmSealer(KEY).seal(PLAIN, EID)
    assert "ann@example.com" not in sealed
    assert "Ann" not in sealed
    assert base64.urlsafe_b64decode(sealed.encode()) != PLAIN
    assert set(sealed) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def test_wrong_key_cannot_open() -> None:
    """Another conversation's key (or a fresh one after shredding) must not open the blob."""
    sealed = AesGcmSealer(KEY).seal(PLAIN, EID)
    with pytest.raises(Unsealable):
        AesGcmSealer(OTHER_KEY).open(sealed, EID)


def test_wrong_event_id_cannot_open() -> None:
    """A blob copied into another event must not open (the event id is bound in)."""
    sealed = AesGcmSealer(KEY).seal(PLAIN, EID)
    with pytest.raises(Unsealable):
        AesGcmSealer(KEY).open(sealed, event_id("conv-s", 8))


@pytest.mark.parametrize("corrupt", ["flip", "not-base64"])
def test_corrupt_blob_is_unsealable(corrupt: str) -> None:
    """A tampered or garbled blob must raise Unsealable, never return bytes."""
    sealed = AesGcmSealer(KEY).seal(PLAIN, EID)
    blob = bytearray(base64.urlsafe_b64decode(sealed))
    if corrupt == "flip":
        blob[0] ^= 1
        sealed = base64.urlsafe_b64encode(bytes(blob)).decode()
    else:
        sealed = "%%%not base64%%%"
    with pytest.raises(Unsealable):
        AesGcmSealer(KEY).open(sealed, EID)


def test_sealing_is_deterministic_per_event_id() -> None:
    """Reprocessing a command must reproduce the very same blob; another event id must not."""
    sealer = AesGcmSealer(KEY)
    assert sealer.seal(PLAIN, EID) == AesGcmSealer(KEY).seal(PLAIN, EID)
    assert sealer.seal(PLAIN, EID) != sealer.seal(PLAIN, event_id("conv-s", 8))


def test_key_must_be_32_bytes() -> None:
    """A short key must be refused up front rather than weakening the cipher."""
    with pytest.raises(ValueError, match="32 bytes"):
        AesGcmSealer(b"short")


def test_no_sealer_refuses_to_seal() -> None:
    """Deciding without a key raises KeyRequired, so the shell fetches one only when needed."""
    with pytest.raises(KeyRequired):
        NoSealer().seal(PLAIN, EID)
