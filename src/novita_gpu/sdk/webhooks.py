"""Checking the signature of a webhook the service sent you (Standard Webhooks, `WEBHOOK_SECRET` set).

Pass the secret, the request's headers and its raw body bytes, exactly as received (not re-serialized
JSON); refuse the request when `verify` returns False::

    from novita_gpu.sdk import verify_webhook

    if not verify_webhook(secret, request.headers, await request.body()):
        return Response(status_code=401)

A timestamp more than `tolerance_seconds` (default 300) from now fails, which stops replays. With
rotated secrets the service sends one signature per secret; any of them matching is enough.
"""

from novita_gpu.webhooks.signing import verify

__all__ = ["verify"]
