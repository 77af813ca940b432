"""One webhook POST over the guarded client, summarised as a `SendResult` (never an exception).

Redirects are never followed (a receiver could bounce us to an internal address), at most
`max_response_bytes` of the answer are read, and a whole attempt is bounded by the sum of the
timeout's phases so a receiver dribbling bytes cannot hold a worker. Errors are short sentences
without the URL, headers or body, which may carry secrets.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import cast

import httpx

from novita_gpu import __version__
from novita_gpu.webhooks.guard import Resolver, UnsafeWebhookTarget, WebhookPolicy, guarded_transport

USER_AGENT = f"novita-gpu-webhooks/{__version__}"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str | None
    retry_after: float | None  # seconds, from a 429/503 Retry-After
    gone: bool  # 410: the receiver asks us to stop
    duration: float  # seconds


def make_webhook_client(
    policy: WebhookPolicy, timeout: httpx.Timeout, *, resolver: Resolver | None = None
) -> httpx.AsyncClient:
    """The client every delivery goes through: guarded dials, no redirects, no proxies from the env.

    `resolver` replaces DNS resolution (tests); by default the event loop's getaddrinfo is used.
    """
    return httpx.AsyncClient(
        transport=guarded_transport(policy, resolver=resolver),
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
        headers={
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
        },
    )


async def send_webhook(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: httpx.Timeout,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> SendResult:
    """POST `body` once. 2xx is ok, 410 is gone, anything else (3xx included) is a failure.

    Once the status line has arrived the result follows it, even if reading the body then fails.
    """
    started = time.monotonic()
    status: int | None = None
    retry_after_header: str | None = None
    try:
        async with asyncio.timeout(_overall_seconds(timeout)):
            async with client.stream(
                "POST", url, content=body, headers=headers, timeout=timeout, follow_redirects=False
            ) as response:
                status = response.status_code
                retry_after_header = response.headers.get("Retry-After")
                await _read_at_most(response, max_response_bytes)
    except UnsafeWebhookTarget as exc:
        return _failure(str(exc), started)
    except (TimeoutError, httpx.TimeoutException):
        if status is None:
            return _failure("timed out", started)
    except httpx.TransportError as exc:
        if status is None:
            return _failure(_transport_error(exc), started)
    except httpx.InvalidURL:
        return _failure("the webhook URL is not valid", started)
    return _result(status, retry_after_header, started)


def _overall_seconds(timeout: httpx.Timeout) -> float | None:
    phases = (timeout.connect, timeout.write, timeout.read, timeout.pool)
    if any(phase is None for phase in phases):
        return None
    return sum(phase for phase in phases if phase is not None)


async def _read_at_most(response: httpx.Response, limit: int) -> None:
    """Read the raw (undecoded) answer up to `limit` bytes, then stop; closing drops the rest."""
    received = 0
    # aiter_raw is an async generator (typed as an iterator): close it when we stop early.
    chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    async with aclosing(chunks):
        async for chunk in chunks:
            received += len(chunk)
            if received >= limit:
                return


def _result(status: int, retry_after_header: str | None, started: float) -> SendResult:
    duration = time.monotonic() - started
    if 200 <= status < 300:
        return SendResult(True, status, None, None, False, duration)
    if status == 410:
        return SendResult(False, status, "HTTP 410: the receiver asked to stop deliveries", None, True, duration)
    retry_after = None
    if status in (429, 503) and retry_after_header is not None:
        retry_after = parse_retry_after(retry_after_header, datetime.now(UTC))
    if 300 <= status < 400:
        error = f"HTTP {status}: redirects are never followed; configure the final URL"
    else:
        error = f"HTTP {status}"
    return SendResult(False, status, error, retry_after, False, duration)


def _failure(error: str, started: float) -> SendResult:
    return SendResult(False, None, error, None, False, time.monotonic() - started)


def _transport_error(exc: httpx.TransportError) -> str:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed"
    if cause is not None:
        return "TLS handshake failed"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver broke the HTTP protocol or closed the connection"
    return f"network error ({type(exc).__name__})"


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if unreadable."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
