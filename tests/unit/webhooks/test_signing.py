"""Standard Webhooks signatures: the spec's test vector, rotation, and verification."""

from __future__ import annotations

import pytest

from novita_gpu.webhooks.signing import sign, signature_headers, verify

MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_webhooks_test_vector() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_headers_carry_id_timestamp_and_signature() -> None:
    assert signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY) == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": EXPECTED,
    }


def test_no_secret_means_no_signature_header() -> None:
    assert signature_headers([], MSG_ID, TIMESTAMP, BODY) == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
    }


def test_rotation_signs_with_every_secret_and_either_verifies() -> None:
    new_secret = "a plain text secret"
    headers = signature_headers([new_secret, SECRET], MSG_ID, TIMESTAMP, BODY)
    signatures = headers["webhook-signature"].split(" ")
    assert signatures == [sign(new_secret, MSG_ID, TIMESTAMP, BODY), EXPECTED]
    assert verify(SECRET, headers, BODY, now=TIMESTAMP)
    assert verify(new_secret, headers, BODY, now=TIMESTAMP)
    assert not verify("whsec_" + "A" * 32, headers, BODY, now=TIMESTAMP)


def test_plain_text_secret_uses_its_utf8_bytes() -> None:
    import base64

    as_whsec = "whsec_" + base64.b64encode("pässword".encode()).decode()
    assert sign("pässword", MSG_ID, TIMESTAMP, BODY) == sign(as_whsec, MSG_ID, TIMESTAMP, BODY)


def test_verify_rejects_tampering_and_stale_or_future_timestamps() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY)
    assert verify(SECRET, headers, BODY, now=TIMESTAMP + 300)
    assert verify(SECRET, headers, BODY, now=TIMESTAMP - 300)
    assert not verify(SECRET, headers, BODY, now=TIMESTAMP + 301)
    assert not verify(SECRET, headers, BODY, now=TIMESTAMP - 301)
    assert verify(SECRET, headers, BODY, tolerance_seconds=600, now=TIMESTAMP + 500)
    assert not verify(SECRET, headers, BODY + b" ", now=TIMESTAMP)
    assert not verify(SECRET, {**headers, "webhook-id": "msg_other"}, BODY, now=TIMESTAMP)
    assert not verify(SECRET, {**headers, "webhook-timestamp": str(TIMESTAMP + 1)}, BODY, now=TIMESTAMP)


def test_verify_reads_headers_case_insensitively_and_needs_all_three() -> None:
    headers = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY)
    upper = {name.upper(): value for name, value in headers.items()}
    assert verify(SECRET, upper, BODY, now=TIMESTAMP)
    for missing in headers:
        partial = {name: value for name, value in headers.items() if name != missing}
        assert not verify(SECRET, partial, BODY, now=TIMESTAMP)
    assert not verify(SECRET, {**headers, "webhook-timestamp": "soon"}, BODY, now=TIMESTAMP)


def test_each_attempt_has_its_own_timestamp_and_signature() -> None:
    first = signature_headers([SECRET], MSG_ID, TIMESTAMP, BODY)
    retry = signature_headers([SECRET], MSG_ID, TIMESTAMP + 60, BODY)
    assert first["webhook-id"] == retry["webhook-id"]
    assert first["webhook-signature"] != retry["webhook-signature"]
    assert verify(SECRET, retry, BODY, now=TIMESTAMP + 60)


def test_malformed_whsec_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as refused:
        sign("whsec_not*base64!", MSG_ID, TIMESTAMP, BODY)
    assert "not*base64" not in str(refused.value)
