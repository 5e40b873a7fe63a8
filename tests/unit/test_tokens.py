"""Resume tokens: HMAC-signed (conversation, site, issue time), verified with a TTL."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from gateway.tokens import MAX_CLOCK_SKEW_SECONDS, InvalidToken, ResumeTokens, TokenClaims

SECRET = b"s" * 32
TTL = 3600
NOW = 1_700_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: bytes, secret: bytes = SECRET) -> str:
    """A token with a genuine MAC over an arbitrary payload."""
    return f"{b64(payload)}.{b64(hmac.new(secret, payload, hashlib.sha256).digest())}"


@pytest.fixture
def tokens() -> ResumeTokens:
    return ResumeTokens(SECRET, TTL)


def test_issue_then_verify_round_trips_the_claims(tokens: ResumeTokens) -> None:
    """Regression: a freshly issued token verifies to the same conversation and site."""
    token = tokens.issue("conv-1", "demo", NOW)
    assert tokens.verify(token, NOW) == TokenClaims("conv-1", "demo", int(NOW))


def test_token_format_is_payload_dot_mac_and_carries_no_extra_data(tokens: ResumeTokens) -> None:
    """Regression: the payload is exactly {c, s, iat}, as documented in docs/protocol.md."""
    body, dot, mac = tokens.issue("conv-1", "demo", NOW + 0.75).partition(".")
    assert dot == "."
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert orjson.loads(payload) == {"c": "conv-1", "s": "demo", "iat": int(NOW)}
    assert len(base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))) == 32


def test_tampered_payload_is_invalid(tokens: ResumeTokens) -> None:
    """Regression: changing the claims (e.g. another conversation id) breaks the signature."""
    token = tokens.issue("conv-1", "demo", NOW)
    _, _, mac = token.partition(".")
    forged = f"{b64(orjson.dumps({'c': 'conv-2', 's': 'demo', 'iat': int(NOW)}))}.{mac}"
    with pytest.raises(InvalidToken):
        tokens.verify(forged, NOW)


def test_tampered_mac_is_invalid(tokens: ResumeTokens) -> None:
    """Regression: a flipped MAC bit must not verify."""
    body, _, mac = tokens.issue("conv-1", "demo", NOW).partition(".")
    raw = bytearray(base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)))
    raw[0] ^= 1
    with pytest.raises(InvalidToken):
        tokens.verify(f"{body}.{b64(bytes(raw))}", NOW)


def test_token_signed_with_another_secret_is_invalid(tokens: ResumeTokens) -> None:
    """Regression: tokens of another deployment (other secret) must be refused."""
    other = ResumeTokens(b"o" * 32, TTL).issue("conv-1", "demo", NOW)
    with pytest.raises(InvalidToken):
        tokens.verify(other, NOW)


@pytest.mark.parametrize(
    "token",
    ["", "nodothere", ".", "abc.", ".abc", "!!!.@@@", "é.é", "a.b.c", "eyJj"],
)
def test_malformed_tokens_are_invalid(tokens: ResumeTokens, token: str) -> None:
    """Regression: garbage tokens raise InvalidToken, never another exception."""
    with pytest.raises(InvalidToken):
        tokens.verify(token, NOW)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'"conv-1"',
        b'{"c": "conv-1", "s": "demo"}',
        b'{"c": "conv-1", "s": "demo", "iat": "yesterday"}',
        b'{"c": "conv-1", "s": "demo", "iat": null}',
        # issue 14: claims of exactly the types issue() writes (str, str, int)
        b'{"c": "conv-1", "s": "demo", "iat": "1700000000"}',
        b'{"c": "conv-1", "s": "demo", "iat": 1700000000.0}',
        b'{"c": "conv-1", "s": "demo", "iat": true}',
        b'{"c": 1, "s": "demo", "iat": 1700000000}',
        b'{"c": "conv-1", "s": ["demo"], "iat": 1700000000}',
        b'{"c": "", "s": "demo", "iat": 1700000000}',
        b'{"c": "conv-1", "s": "", "iat": 1700000000}',
        b'{"c": "conv-1", "s": "demo", "iat": 1e999}',
    ],
)
def test_genuinely_signed_but_malformed_claims_are_invalid(
    tokens: ResumeTokens, payload: bytes
) -> None:
    """Regression: claims that do not parse raise InvalidToken even with a valid MAC."""
    with pytest.raises(InvalidToken):
        tokens.verify(signed(payload), NOW)


def test_a_token_with_a_string_iat_is_refused_though_it_looks_like_a_time(
    tokens: ResumeTokens,
) -> None:
    """Regression (issue 14): `"iat": "1700000000"` was converted with float() and accepted."""
    payload = b'{"c": "conv-1", "s": "demo", "iat": "1700000000"}'
    with pytest.raises(InvalidToken, match="malformed claims"):
        tokens.verify(signed(payload), NOW)


def test_a_token_from_the_future_is_refused_beyond_the_clock_skew(tokens: ResumeTokens) -> None:
    """Regression (issue 14): a token with an iat far in the future never expired."""
    assert tokens.verify(tokens.issue("c", "demo", NOW + MAX_CLOCK_SKEW_SECONDS), NOW)
    with pytest.raises(InvalidToken, match="future"):
        tokens.verify(tokens.issue("c", "demo", NOW + MAX_CLOCK_SKEW_SECONDS + 1), NOW)
    far = signed(orjson.dumps({"c": "c", "s": "demo", "iat": 2**62}))
    with pytest.raises(InvalidToken, match="future"):
        tokens.verify(far, NOW + 10 * TTL)


def test_token_is_valid_up_to_the_ttl_and_expired_after(tokens: ResumeTokens) -> None:
    """Regression: the TTL boundary: valid at exactly ttl seconds, expired one second later."""
    token = tokens.issue("conv-1", "demo", NOW)
    assert tokens.verify(token, NOW + TTL).conversation_id == "conv-1"
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token, NOW + TTL + 1)


@pytest.mark.parametrize("secret", [b"", b"short", b"x" * 15])
def test_short_secret_is_rejected(secret: bytes) -> None:
    """Regression: a resume secret under 16 bytes is too weak and must not be accepted."""
    with pytest.raises(ValueError, match="16 bytes"):
        ResumeTokens(secret, TTL)


def test_sixteen_byte_secret_is_accepted() -> None:
    """Regression: the minimum secret length itself is allowed."""
    tokens = ResumeTokens(b"x" * 16, TTL)
    assert tokens.verify(tokens.issue("c", "s", NOW), NOW).site_id == "s"


def test_only_the_canonical_spelling_of_a_token_verifies() -> None:
    """Padding or spare bits appended to a token make it a different, invalid string."""
    tokens = ResumeTokens(b"k" * 32, ttl_seconds=60)
    token = tokens.issue("c1", "demo", now=100.0)
    with pytest.raises(InvalidToken):
        tokens.verify(token + "==", now=100.0)


def test_a_rotation_accepts_tokens_of_the_previous_secret_and_signs_with_the_new() -> None:
    """Visitors holding a token of the old secret keep their way back during a rotation."""
    old, new = ResumeTokens(SECRET, TTL), ResumeTokens(b"n" * 32, TTL, previous=(SECRET,))
    issued_before = old.issue("c1", "acme", NOW)
    assert new.verify(issued_before, NOW) == TokenClaims("c1", "acme", int(NOW))
    issued_after = new.issue("c2", "acme", NOW)
    assert ResumeTokens(b"n" * 32, TTL).verify(issued_after, NOW).conversation_id == "c2"
    with pytest.raises(InvalidToken, match="bad signature"):
        old.verify(issued_after, NOW)  # signed with the new secret, not the previous one
    with pytest.raises(InvalidToken, match="bad signature"):
        ResumeTokens(b"n" * 32, TTL).verify(issued_before, NOW)  # previous secret retired


def test_a_short_previous_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ResumeTokens(SECRET, TTL, previous=(b"short",))
