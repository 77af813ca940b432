"""One webhook POST over the guarded client, summarised as a `SendResult` (never an exception).

Redirects are never followed (a receiver could bounce us to an internal address), at most
`max_response_bytes` of the answer are read, and a whole attempt is bounded by one timeout so a
receiver dribbling bytes cannot hold a worker. Errors are short sentences without the URL, headers
or body, which may carry secrets.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import certifi
from yarl import URL

from novita_gpu import __version__
from novita_gpu.kit.retry_timing import parse_retry_after
from novita_gpu.webhooks.guard import (
    GuardedResolver,
    Resolver,
    UnsafeWebhookTarget,
    WebhookPolicy,
    refuse_literal_target,
)

USER_AGENT = f"novita-gpu-webhooks/{__version__}"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
# As many connections as the dispatcher sends at once.
MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str | None
    retry_after: float | None  # seconds, from a 429/503 Retry-After
    gone: bool  # 410: the receiver asks us to stop
    duration: float  # seconds


class WebhookSender:
    """Every delivery goes through this: guarded dials, no redirects, no proxies from the environment.

    aiohttp rather than httpx: with 64 deliveries in flight httpcore scanned its whole pool on every
    request, an order of magnitude more CPU per POST (docs/performance.md). `resolver` replaces
    DNS (tests) and `ssl_context` the default verification (certifi's CAs), e.g. for a private CA.
    """

    def __init__(
        self,
        policy: WebhookPolicy,
        timeout_seconds: float,
        *,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.policy = policy
        self.max_response_bytes = max_response_bytes
        # One bound for the whole attempt, and the same for connecting and for each wait on the socket.
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=timeout_seconds, sock_read=timeout_seconds)
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(policy, resolver),
            ssl=ssl_context or ssl.create_default_context(cafile=certifi.where()),
            limit=MAX_CONNECTIONS,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", "Accept-Encoding": "identity"},
        )

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        """POST `body` once. 2xx is ok, 410 is gone, anything else (3xx included) is a failure.

        Once the status line has arrived the result follows it, even if reading the body then fails.
        """
        started = time.monotonic()
        status: int | None = None
        retry_after_header: str | None = None
        try:
            refuse_literal_target(URL(url).raw_host or "", self.policy)
            async with self.session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=self.timeout
            ) as response:
                status = response.status
                retry_after_header = response.headers.get("Retry-After")
                if not await _read_at_most(response, self.max_response_bytes):
                    response.close()  # drop the connection rather than read the rest
        except UnsafeWebhookTarget as exc:
            return _failure(str(exc), started)
        except TimeoutError:
            if status is None:
                return _failure("timed out", started)
        except aiohttp.ClientError as exc:  # before ValueError: certificate errors are ValueErrors too
            if status is None:
                return _failure(_client_error(exc), started)
        except ValueError:  # yarl could not parse the URL
            return _failure("the webhook URL is not valid", started)
        assert status is not None
        return _result(status, retry_after_header, started)


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bool:
    """Read the raw answer up to `limit` bytes; True when it ended within the limit."""
    received = 0
    while chunk := await response.content.readany():
        received += len(chunk)
        if received >= limit:
            return False
    return True


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


def _client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.InvalidURL):
        return "the webhook URL is not valid"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "could not resolve the host name"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "could not connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "the receiver broke the HTTP protocol or closed the connection"
    return f"network error ({type(exc).__name__})"
