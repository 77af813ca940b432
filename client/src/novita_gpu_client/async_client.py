"""The asyncio client: `Methods` to be awaited, over httpx.AsyncClient."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine, Mapping
from types import TracebackType
from typing import Any

import httpx

from novita_gpu_client.calls import Json
from novita_gpu_client.core import Streamed
from novita_gpu_client.events import Event
from novita_gpu_client.methods import Methods


class AsyncClient(Methods[Awaitable[Json], AsyncIterator[Json], AsyncIterator[Event]]):
    """The asyncio twin of `Client`: same methods and answers, to be awaited (`iter_instances` and
    `iter_events` are async iterators). Use it as `async with AsyncClient(...) as client:` or call
    `aclose()`."""

    def _connect(self, httpx_options: dict[str, Any]) -> AsyncTransport:
        self._http = httpx.AsyncClient(**httpx_options)
        return AsyncTransport(self._http)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _answer(self, work: Coroutine[Any, Any, Json]) -> Awaitable[Json]:
        return work

    def _instances(self, items: AsyncGenerator[Json, None]) -> AsyncIterator[Json]:
        return items

    def _events(self, items: AsyncGenerator[Event, None]) -> AsyncIterator[Event]:
        return items


class AsyncTransport:
    """httpx.AsyncClient as a `core.Transport`."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def request(self, options: Mapping[str, Any]) -> httpx.Response:
        return await self._http.request(**options)

    async def sleep(self, seconds: float) -> None:
        # Imported here: asyncio costs a blocking-only script (most of them) 40 ms at import; a running
        # async client has it loaded already.
        import asyncio

        await asyncio.sleep(seconds)

    @contextlib.asynccontextmanager
    async def stream(self, options: Mapping[str, Any]) -> AsyncIterator[Streamed]:
        async with self._http.stream(**options) as response:
            if not response.is_success:
                await response.aread()
            yield response, response.aiter_lines()
