"""Sending one Novita call: the HTTP session, retries within a time budget, timeouts, the observer told of
every attempt, and `answer_within` for calls a person waits on. Knows no endpoint: the `*_calls` modules
say what to send and read what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import aiohttp
import structlog
from pydantic import SecretStr

from novita_gpu.novita.answers import RETRYABLE, Failure, Outcome, Success, interpret
from novita_gpu.novita.errors import NovitaError, UpstreamUnavailable
from novita_gpu.novita.paging import LIST_CONCURRENCY
from novita_gpu.novita.retry import Backoff, RetryBudget

# The name these lines had before the client was split: log queries select on it.
log = structlog.get_logger("novita_gpu.novita.client")

# Transport failures that happen before any byte of the request left (no connection could be made, or
# none was free in time): safe to repeat even for create.
NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# Calls in flight at once; more wait for a free connection (within the call's timeout).
MAX_CONNECTIONS = 64
# Idle connections are closed here before the server closes them. A request written on a connection the
# server is closing at that moment gets no answer, and an unanswered create is in doubt (never sent again)
# until it shows up or STARTUP_TIMEOUT ends it: about 1 create in 10,000 with aiohttp's 15 s against
# uvicorn's 5 s (the emulator's). Front ends in front of APIs commonly close after 60-75 s.
KEEPALIVE_SECONDS = 4.0

# How long a request a person waits on tries to reach Novita before it answers 503 (`answer_within`).
REQUEST_PATIENCE_SECONDS = 4.0

# When the calls of the current task must have given up, retries included (monotonic): set by `answer_within`.
_give_up_at: ContextVar[float | None] = ContextVar("novita_give_up_at", default=None)

GPU_INSTANCE_ROOT = "/gpu-instance/openapi/v1"


@contextlib.contextmanager
def answer_within(seconds: float) -> Iterator[None]:
    """Novita calls made inside stop retrying, and stop trying to connect, once `seconds` have passed: for a
    request a person waits on, where an unreachable Novita must be a prompt 503 rather than half a minute
    of retries. An answer already arriving is not cut. Background work keeps the client's own deadline."""
    token = _give_up_at.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _give_up_at.reset(token)


class CallObserver(Protocol):
    """Told about every HTTP attempt (metrics, health): stable endpoint name, outcome, duration."""

    def __call__(self, endpoint: str, outcome: str, seconds: float) -> None: ...


Ambiguous = Callable[[NovitaError], NovitaError]


def api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    root = root.removesuffix("/v1")
    return f"{root}/v1"


def metrics_root(api_root: str) -> str:
    """Where the monitoring API lives: Novita serves it under `/openapi/v1`, beside (not under) the GPU
    instance API's `/gpu-instance/openapi/v1`. A base URL without that suffix (a proxy) is used as is."""
    if api_root.endswith(GPU_INSTANCE_ROOT):
        return api_root.removesuffix(GPU_INSTANCE_ROOT) + "/openapi/v1"
    return api_root


def env_proxy(base_url: str) -> str | None:
    """The proxy for Novita's host from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as curl would use."""
    scheme, _, rest = base_url.partition("://")
    host = rest.split("/", 1)[0]
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


class Transport:
    """The HTTP side of one `NovitaClient`; the API key never appears in its errors, reprs or logs."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        retry_deadline: float,
        max_attempts: int,
        observer: CallObserver | None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = api_root(base_url)
        self.metrics_url = metrics_root(self.base_url)
        self._key = SecretStr(api_key)
        self._retry_deadline = retry_deadline
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._observer = observer
        self._sleep = sleep
        self._backoff = Backoff()
        self._proxy = env_proxy(self.base_url)
        # When Novita last asked us to slow down (429), until when (monotonic): optional callers (the GPU
        # utilization poller) wait it out instead of adding calls while the reconciler's are being refused.
        self._rate_limited_until = 0.0
        # aiohttp rather than httpx: httpcore scans its pool and queue on every request and answer, an
        # order of magnitude more CPU per call, which a burst of creates or a listing per tick feels
        # (docs/performance.md).
        # Separate connect and read timeouts tell "never sent" from "sent, no answer" (see NOT_SENT).
        self._http = aiohttp.ClientSession(
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            connector=aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS + LIST_CONCURRENCY, keepalive_timeout=KEEPALIVE_SECONDS
            ),
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout),
            # HTTPS_PROXY and friends are read once (`_proxy`): with trust_env aiohttp reads them, and
            # ~/.netrc, in a thread on every call.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.close()

    def rate_limit_wait(self) -> float:
        """Seconds until Novita's last 429 (its Retry-After, or our backoff) has passed; 0 when none."""
        return max(0.0, self._rate_limited_until - time.monotonic())

    async def call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        ambiguous: Ambiguous | None = None,
        root: str | None = None,
    ) -> Any:
        """Send with retries; returns the decoded JSON body (None when empty or not JSON).

        Query parameters that are None are left out. `ambiguous` marks a non-idempotent call: failures
        after the request may have been received are not retried and are converted by it. `root`
        replaces the API root (the monitoring API's own).
        """
        if params is not None:
            params = {key: value for key, value in params.items() if value is not None}
        give_up_at = _give_up_at.get()
        deadline = self._retry_deadline
        if give_up_at is not None:
            deadline = min(deadline, give_up_at - time.monotonic())
        budget = RetryBudget(max_attempts=self._max_attempts, deadline=deadline)
        while True:
            started = time.monotonic()
            left = None if give_up_at is None else max(0.05, give_up_at - started)
            result = await self._attempt(method, (root or self.base_url) + path, params, json_body, left)
            elapsed = time.monotonic() - started
            budget.record_attempt(elapsed)
            if isinstance(result, Success):
                self._observe(endpoint, "ok", elapsed)
                return result.body
            outcome = result.outcome
            self._observe(endpoint, outcome, elapsed)
            if ambiguous is not None and result.sent and outcome in ("server_error", "network_error", "timeout"):
                raise ambiguous(result.error) from None
            if outcome not in RETRYABLE:
                raise result.error from None
            desired = result.retry_after if result.retry_after is not None else self._backoff.wait(budget.attempts)
            if outcome == "rate_limited":
                self._rate_limited_until = max(self._rate_limited_until, time.monotonic() + desired)
            wait = budget.next_wait(desired)
            if wait is None:
                raise result.error from None
            log.warning(
                "novita.retry",
                endpoint=endpoint,
                attempt=budget.attempts,
                outcome=outcome,
                wait=round(wait, 3),
                status=result.error.status,
                reason=result.error.reason,
            )
            await self._sleep(wait)

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Mapping[str, Any] | None,
        left: float | None = None,
    ) -> Success | Failure:
        # Within `answer_within` only connecting is cut short: a healthy but long answer still arrives.
        # (aiohttp reads timeout=None as "no timeout at all": the session's own applies unless one is given.)
        extra: dict[str, Any] = {}
        if left is not None:
            extra["timeout"] = aiohttp.ClientTimeout(connect=min(left, self._timeout), sock_read=self._timeout)
        try:
            async with self._http.request(
                method, url, params=params, json=json_body, allow_redirects=False, proxy=self._proxy, **extra
            ) as response:
                content = await response.read()
                return interpret(response.status, response.headers, content, self._redact)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome: Outcome = "timeout" if isinstance(exc, TimeoutError) else "network_error"
            reason = "TIMEOUT" if outcome == "timeout" else "NETWORK_ERROR"
            message = self._redact(f"{type(exc).__name__}: {exc}")
            error = UpstreamUnavailable(0, reason, message)
            return Failure(error, outcome, sent=not isinstance(exc, NOT_SENT))

    async def send_once(self, endpoint: str, path: str, body: Mapping[str, Any]) -> Any:
        """POST a write that is not sent again once Novita may have acted on it (a repeat could make a second
        object, meet a changed one or start a second migration): its failure is raised as it came. Retried
        only when Novita cannot have acted on it (429, or no connection was made)."""
        return await self.call(endpoint, "POST", path, json_body=body, ambiguous=_as_is)

    def _redact(self, text: str) -> str:
        return text.replace(self._key.get_secret_value(), "***")

    def _observe(self, endpoint: str, outcome: Outcome, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(endpoint, outcome, seconds)
        except Exception:
            log.exception("novita.observer_failed", endpoint=endpoint)


def _as_is(error: NovitaError) -> NovitaError:
    return error
