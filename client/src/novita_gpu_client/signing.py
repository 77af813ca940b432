"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the signature is
`v1,<base64 HMAC-SHA256>`. A secret is either `whsec_<base64 key>` or plain text (its UTF-8 bytes are
the key). With several secrets (rotation) the header carries one signature per secret, space-separated,
and a receiver accepts the message when any of them matches. Each attempt is signed with its own
timestamp; the id stays the same across retries so receivers can de-duplicate.

A receiver passes the secret, the request's headers and its raw body bytes, exactly as received (not
re-serialized JSON), and refuses the request when `verify` returns False::

    from novita_gpu_client import verify_webhook

    if not verify_webhook(secret, request.headers, await request.body()):
        return Response(status_code=401)

A timestamp more than `tolerance_seconds` (default 300) from now fails, which stops replays. With rotated
secrets the service sends one signature per secret; any of them matching is enough.

The service signs with this very module (novita_gpu.webhooks.signing re-exports it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def _key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except binascii.Error:
            raise ValueError("a webhook secret starting with 'whsec_' must continue with base64") from None
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "msg_id.timestamp.body">` under `secret`."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers; no `webhook-signature` when there is no secret."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secrets:
        headers["webhook-signature"] = " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)
    return headers


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> bool:
    """True when one `v1` signature matches and the timestamp is within the tolerance of `now`."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp_text = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "").split()
    if not msg_id or not timestamp_text.isascii() or not timestamp_text.isdigit() or not signatures:
        return False
    timestamp = int(timestamp_text)
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, msg_id, timestamp, body).encode("ascii")
    matched = False
    for signature in signatures:
        # Compare every candidate so the time taken does not reveal which one matched.
        matched |= hmac.compare_digest(signature.encode("utf-8"), expected)
    return matched
