"""The blocking client: `Methods` answered at once, over httpx.Client."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from novita_gpu_client.calls import Json
from novita_gpu_client.core import Streamed, iter_blocking, run_blocking
from novita_gpu_client.events import Event
from novita_gpu_client.methods import Methods


class Client(Methods[Json, Iterator[Json], Iterator[Event]]):
    """A client for the control plane's HTTP API. Answers are the server's JSON objects (dicts); an error
    answer raises `ApiError`, an unreachable service `ServiceConnectionError`. Use it as
    `with Client(...) as client:` or call `close()`."""

    def _connect(self, httpx_options: dict[str, Any]) -> BlockingTransport:
        self._http = httpx.Client(**httpx_options)
        return BlockingTransport(self._http)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _answer(self, work: Coroutine[Any, Any, Json]) -> Json:
        return run_blocking(work)

    def _instances(self, items: AsyncGenerator[Json, None]) -> Iterator[Json]:
        return iter_blocking(items)

    def _events(self, items: AsyncGenerator[Event, None]) -> Iterator[Event]:
        return iter_blocking(items)


class BlockingTransport:
    """httpx.Client as a `core.Transport`: every method blocks, then returns without ever suspending."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    async def request(self, options: Mapping[str, Any]) -> httpx.Response:
        return self._http.request(**options)

    async def sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # noqa: ASYNC251 (blocking is this transport's point: see core.run_blocking)

    @contextlib.asynccontextmanager
    async def stream(self, options: Mapping[str, Any]) -> AsyncIterator[Streamed]:
        with self._http.stream(**options) as response:
            if not response.is_success:
                response.read()
            yield response, _Lines(response.iter_lines())


class _Lines:
    """A plain iterator of lines as an async one (each step blocks, none suspends)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            raise StopAsyncIteration from None
