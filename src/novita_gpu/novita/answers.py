"""What one HTTP answer from Novita means: success with its JSON, or a typed error and whether to retry.

Kept apart from sending so the rules for Novita's odd answers (error envelopes served with 200, bodies
that are not JSON, text our store cannot hold) read in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from novita_gpu.novita.errors import NovitaError, make_error
from novita_gpu.novita.retry import parse_retry_after

Outcome = Literal["ok", "rate_limited", "server_error", "network_error", "timeout", "client_error"]
OUTCOMES: tuple[Outcome, ...] = (
    "ok",
    "rate_limited",
    "server_error",
    "network_error",
    "timeout",
    "client_error",
)
RETRYABLE: frozenset[Outcome] = frozenset({"rate_limited", "server_error", "network_error", "timeout"})
_SNIPPET = 200


@dataclass(frozen=True)
class Success:
    body: Any  # decoded JSON, or None for an empty or non-JSON body


@dataclass(frozen=True)
class Failure:
    error: NovitaError
    outcome: Outcome
    sent: bool  # the request may have reached Novita
    retry_after: float | None = None


def interpret(
    status: int, headers: Mapping[str, str], content: bytes, redact: Callable[[str], str]
) -> Success | Failure:
    """The answer as a `Success`, or a `Failure` whose error text went through `redact`."""
    body = decode(content)
    envelope = body if isinstance(body, dict) else {}
    code = envelope.get("code")
    if (
        200 <= status < 300
        and isinstance(code, int)
        and code >= 400
        and ("reason" in envelope or "message" in envelope)
    ):
        status = code  # an error envelope served with HTTP 200
    if 200 <= status < 300:
        return Success(body)
    reason = str(envelope.get("reason") or "")
    message = str(envelope.get("message") or "") or _describe_body(status, headers, content, body)
    metadata = envelope.get("metadata")
    retry_after = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
    error = make_error(
        status,
        redact(reason),
        redact(message),
        metadata if isinstance(metadata, dict) else None,
        retry_after=retry_after,
    )
    outcome: Outcome
    if status == 429:
        outcome = "rate_limited"
    elif status >= 500:
        outcome = "server_error"
    else:
        outcome = "client_error"
    return Failure(error, outcome, sent=True, retry_after=retry_after)


def decode(content: bytes) -> Any:
    """The body as JSON our store can hold, or None when it is empty or not JSON."""
    if not content.strip():
        return None
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses but Python's json reads (NaN, Infinity, lone surrogates)
            return _storable(json.loads(content))
        except ValueError:
            return None
    return _storable(body) if b"\\u0000" in content else body


def _storable(value: Any) -> Any:
    """`value` with the text our store cannot hold (lone surrogates, NUL) replaced by U+FFFD, so an odd
    answer from Novita can never make a write fail."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _describe_body(status: int, headers: Mapping[str, str], content: bytes, body: Any) -> str:
    if isinstance(body, str):
        return body[:_SNIPPET]
    text = content.decode("utf-8", errors="replace").strip()
    kind = headers.get("Content-Type", "unknown content type")
    if not text:
        return f"HTTP {status} with an empty body"
    return f"HTTP {status} with a non-Novita body ({kind}): {text[:_SNIPPET]}"
