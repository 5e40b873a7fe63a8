"""Standard Webhooks signatures, checked against the reference implementation.

The ``standardwebhooks`` package (PyPI, tests only) is what receivers run; if
our signatures and theirs ever disagree, every customer's verification fails.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.delivery import signing

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkh"
MSG_ID = "9f7bdf36-1a59-5a81-a43e-8eb4a55dfc7e"
BODY = b'{"data":{"contact":{"name":"Zo\xc3\xab"}},"type":"lead.captured"}'


def reference_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    sig = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(timestamp, UTC), body)
    return {"webhook-id": MSG_ID, "webhook-timestamp": str(timestamp), "webhook-signature": sig}


def test_the_spec_example_vector() -> None:
    """The example of the Standard Webhooks specification, byte for byte."""
    body = b'{"test": 2432232314}'
    got = signing.sign([SECRET], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_ours_verify_with_theirs() -> None:
    now = int(time.time())
    headers = signing.headers([SECRET], MSG_ID, now, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "data": {"contact": {"name": "Zoë"}},
        "type": "lead.captured",
    }


def test_theirs_verify_with_ours() -> None:
    now = int(time.time())
    h = reference_headers(SECRET, now, BODY)
    signing.verify(SECRET, MSG_ID, h["webhook-timestamp"], h["webhook-signature"], BODY, now)


def test_rotation_either_secret_verifies_and_the_new_one_comes_first() -> None:
    now = int(time.time())
    headers = signing.headers([NEW_SECRET, SECRET], MSG_ID, now, BODY)
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2
    assert parts[0] == reference_headers(NEW_SECRET, now, BODY)["webhook-signature"]
    for secret in (NEW_SECRET, SECRET):
        Webhook(secret).verify(BODY, headers)
        signing.verify(secret, MSG_ID, str(now), headers["webhook-signature"], BODY, now)


def test_a_tampered_body_id_or_timestamp_fails_both_verifiers() -> None:
    now = int(time.time())
    headers = signing.headers([SECRET], MSG_ID, now, BODY)
    tampered = BODY.replace(b"Zo", b"Jo")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)
    with pytest.raises(signing.BadSignature):
        signing.verify(SECRET, MSG_ID, str(now), headers["webhook-signature"], tampered, now)
    with pytest.raises(signing.BadSignature):
        signing.verify(SECRET, "other-id", str(now), headers["webhook-signature"], BODY, now)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, {**headers, "webhook-timestamp": str(now + 1)})


def test_a_signature_with_another_secret_fails() -> None:
    now = int(time.time())
    headers = signing.headers([NEW_SECRET], MSG_ID, now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_a_stale_timestamp_is_refused() -> None:
    now = int(time.time())
    sig = signing.sign([SECRET], MSG_ID, now - 301, BODY)
    with pytest.raises(signing.BadSignature, match="too far"):
        signing.verify(SECRET, MSG_ID, str(now - 301), sig, BODY, now)
    with pytest.raises(signing.BadSignature, match="integer"):
        signing.verify(SECRET, MSG_ID, "soon", sig, BODY, now)


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_not base64!",
        "whsec_c2hvcnQ=",  # 5 bytes: too short a key
        "whsec_",
    ],
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(signing.BadSecret):
        signing.sign([secret], MSG_ID, 1, BODY)


def test_no_secret_signs_nothing() -> None:
    with pytest.raises(signing.BadSecret):
        signing.sign([], MSG_ID, 1, BODY)
