"""Async client for Novita's GPU-instance v1 API (`.../gpu-instance/openapi/v1`).

Idempotent calls (reads, start/stop/restart/delete and the other deletes) are retried on 429, 5xx,
network errors and timeouts. Creates, updates and migrates are retried only when Novita cannot have acted
on the request (429, or the connection was never made); `create_instance` then raises `AmbiguousCreate`,
and the caller looks the instance up by name, while the other writes raise the error itself. The API key
never appears in errors, reprs or logs.

`NovitaClient` only assembles the parts: sending and retrying (`transport`), the calls by subject
(`catalog_calls`, `account_calls`, `instance_calls`, `job_calls`, `image_calls`); the names other modules import stay
importable here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType

from novita_gpu.novita.account_calls import ACCOUNT_ENDPOINTS, AccountCalls
from novita_gpu.novita.answers import OUTCOMES, Outcome
from novita_gpu.novita.catalog_calls import CATALOG_ENDPOINTS, CatalogCalls, TemplateQuery
from novita_gpu.novita.image_calls import IMAGE_ENDPOINTS, ImageCalls
from novita_gpu.novita.instance_calls import INSTANCE_ENDPOINTS, InstanceCalls, InstanceQuery
from novita_gpu.novita.job_calls import JOB_ENDPOINTS, JobCalls, JobQuery
from novita_gpu.novita.paging import LIST_CONCURRENCY
from novita_gpu.novita.parsing import InstanceMemo
from novita_gpu.novita.transport import (
    GPU_INSTANCE_ROOT,
    KEEPALIVE_SECONDS,
    MAX_CONNECTIONS,
    REQUEST_PATIENCE_SECONDS,
    CallObserver,
    Transport,
    answer_within,
    metrics_root,
)

__all__ = [
    "ENDPOINTS",
    "GPU_INSTANCE_ROOT",
    "KEEPALIVE_SECONDS",
    "LIST_CONCURRENCY",
    "MAX_CONNECTIONS",
    "OUTCOMES",
    "REQUEST_PATIENCE_SECONDS",
    "CallObserver",
    "InstanceQuery",
    "JobQuery",
    "NovitaClient",
    "Outcome",
    "TemplateQuery",
    "answer_within",
    "metrics_root",
]

# Every endpoint name the observer can be told about.
ENDPOINTS: tuple[str, ...] = (
    *CATALOG_ENDPOINTS,
    *ACCOUNT_ENDPOINTS,
    *INSTANCE_ENDPOINTS,
    *JOB_ENDPOINTS,
    *IMAGE_ENDPOINTS,
)


class NovitaClient(CatalogCalls, AccountCalls, InstanceCalls, JobCalls, ImageCalls):
    """One client per process; safe to share between tasks. Use as `async with` or call `aclose()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 15.0,
        retry_deadline: float = 30.0,
        max_attempts: int = 6,
        observer: CallObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = Transport(
            base_url,
            api_key,
            timeout=timeout,
            retry_deadline=retry_deadline,
            max_attempts=max_attempts,
            observer=observer,
            sleep=sleep,
        )
        self._instances = InstanceMemo()
        self.base_url = self._transport.base_url
        self.metrics_url = self._transport.metrics_url

    def __repr__(self) -> str:
        return f"NovitaClient(base_url={self.base_url!r})"

    @property
    def host(self) -> str:
        """Where Novita is, as an error message names it (`api.novita.ai`, `127.0.0.1:4000`)."""
        return self.base_url.split("://", 1)[-1].split("/", 1)[0]

    async def __aenter__(self) -> NovitaClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    def rate_limit_wait(self) -> float:
        """Seconds until Novita's last 429 (its Retry-After, or our backoff) has passed; 0 when none."""
        return self._transport.rate_limit_wait()
