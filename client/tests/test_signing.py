"""Webhook signatures as a receiver checks them with the client (the service signs with the same module)."""

from __future__ import annotations

import base64

from novita_gpu_client import verify_webhook
from novita_gpu_client.signing import sign, signature_headers

SECRET = "whsec_" + base64.b64encode(b"secret-key-for-tests").decode()
BODY = b'{"event":"instance.ready"}'
NOW = 1_700_000_000


def test_a_signed_body_verifies_and_any_change_fails() -> None:
    headers = signature_headers([SECRET], "msg_1", NOW, BODY)
    assert verify_webhook(SECRET, headers, BODY, now=NOW + 10)
    assert not verify_webhook(SECRET, headers, BODY + b" ", now=NOW)
    assert not verify_webhook("whsec_" + base64.b64encode(b"another").decode(), headers, BODY, now=NOW)
    assert not verify_webhook(SECRET, {**headers, "webhook-id": "msg_2"}, BODY, now=NOW)
    upper = {name.upper(): value for name, value in headers.items()}  # header names in any case
    assert verify_webhook(SECRET, upper, BODY, now=NOW)


def test_an_old_or_future_timestamp_fails_and_one_secret_of_several_is_enough() -> None:
    headers = signature_headers([SECRET], "msg_1", NOW, BODY)
    assert not verify_webhook(SECRET, headers, BODY, now=NOW + 301)
    assert not verify_webhook(SECRET, headers, BODY, now=NOW - 301)
    assert verify_webhook(SECRET, headers, BODY, tolerance_seconds=600, now=NOW + 400)
    rotated = signature_headers(["old-plain-secret", SECRET], "msg_1", NOW, BODY)
    assert len(rotated["webhook-signature"].split()) == 2
    assert verify_webhook(SECRET, rotated, BODY, now=NOW) and verify_webhook("old-plain-secret", rotated, BODY, now=NOW)
    assert sign(SECRET, "msg_1", NOW, BODY).startswith("v1,")
    assert not verify_webhook(SECRET, {"webhook-id": "msg_1", "webhook-timestamp": "\uff11\uff12"}, BODY, now=NOW)
