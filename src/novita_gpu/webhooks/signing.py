"""Standard Webhooks signatures: the client's (novita_gpu_client.signing), so what the service signs and
what a receiver verifies with the client are one piece of code. The scheme is described there."""

from novita_gpu_client.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    SECRET_PREFIX,
    sign,
    signature_headers,
    verify,
)

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "SECRET_PREFIX", "sign", "signature_headers", "verify"]
