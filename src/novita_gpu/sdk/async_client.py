"""The asyncio client: the calls of `Methods`, to be awaited, plus waiting and paging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType

import httpx

from novita_gpu.sdk import calls, results
from novita_gpu.sdk.calls import Call, Json
from novita_gpu.sdk.config import DEFAULT_URL
from novita_gpu.sdk.errors import ApiError
from novita_gpu.sdk.events import HEARTBEAT_TIMEOUT, Event, Follower, SseDecoder
from novita_gpu.sdk.methods import Methods
from novita_gpu.sdk.retry import RetryPolicy
from novita_gpu.sdk.waiting import Wait


class AsyncClient(Methods[Awaitable[Json]]):
    """The asyncio twin of `Client`: same methods and answers, to be awaited (`iter_instances` is an async
    iterator). Use it as `async with AsyncClient(...) as client:` or call `aclose()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retry)
        self._http = httpx.AsyncClient(**self._config.httpx_options())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Json:
        retry, started, attempt = self._config.retry, time.monotonic(), 1
        while True:
            began = time.monotonic()
            timeout = retry.attempt_timeout(self._config.timeout, began - started)
            try:
                response = await self._http.request(**call.request_options(timeout))
            except httpx.TransportError as exc:
                spent, took = time.monotonic() - started, time.monotonic() - began
                delay = retry.after_error(call, exc, attempt, spent=spent, took=took)
                if delay is None:
                    raise results.connection_error(self._config.base_url, exc) from exc
            else:
                spent, took = time.monotonic() - started, time.monotonic() - began
                delay = retry.after_response(call, response, attempt, spent=spent, took=took)
                if delay is None:
                    return results.result(call, response)
            await asyncio.sleep(delay)
            attempt += 1

    async def get_by_name(self, name: str) -> Json:
        """The live instance called `name` (else the newest one); `ApiError` 404 when there is none."""
        return results.named(await self._send(calls.list_page(name=name, limit=1)), name)

    async def iter_instances(
        self,
        *,
        status: str | Iterable[str] | None = None,
        name: str | None = None,
        page_size: int = 100,
        labels: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Json]:
        """Every matching instance, following `nextCursor` page after page."""
        cursor: str | None = None
        while True:
            page = await self._send(calls.list_page(status, name, page_size, cursor, labels))
            for instance in page["instances"]:
                yield instance
            cursor = page.get("nextCursor")
            if not cursor:
                return

    async def wait_for(
        self,
        instance_id: str,
        status: str | Iterable[str] = "ready",
        *,
        timeout: float = 600.0,
        poll_timeout: float = 30.0,
        on_change: Callable[[Json], None] | None = None,
    ) -> Json:
        """Long-poll until the instance has `status`. Raises `InstanceFailed` when it ends failed/terminated
        instead, or (as its subclass `InstanceStopped`) is stopped, which it stays until someone starts it,
        and `WaitTimeout` after `timeout` seconds. `on_change(view)` hears of every status on the way."""
        wait = Wait(instance_id, status, timeout, poll_timeout, on_change)
        while (done := wait.outcome(await self._send(wait.next_call()))) is None:
            pass
        return done

    async def iter_events(
        self,
        instance: str | None = None,
        after: int | None = None,
        *,
        follow: bool = True,
        give_up_after: float | None = 300.0,
    ) -> AsyncIterator[Event]:
        """`Client.iter_events` as an async iterator: status changes as they happen, resuming by itself."""
        # Without `follow`, a call like any other: the retry policy's `give_up_after` bounds it.
        budget = None if follow else self._config.retry.give_up_after
        heartbeat = HEARTBEAT_TIMEOUT if budget is None else min(HEARTBEAT_TIMEOUT, budget)
        follower = Follower(instance, after, follow, heartbeat_timeout=heartbeat, give_up_after=give_up_after)
        started = time.monotonic()
        while True:
            failure: ApiError | httpx.TransportError | None = None
            connect = self._config.retry.attempt_timeout(self._config.timeout, time.monotonic() - started)
            try:
                async with self._http.stream(**follower.request(connect)) as response:
                    if response.is_success:
                        follower.connected()
                        decoder = SseDecoder()
                        async for line in response.aiter_lines():
                            message = decoder.feed(line)
                            if message is not None and (event := follower.on_message(message)) is not None:
                                yield event
                        if follower.ended():
                            return
                        delay = follower.after_drop()
                    else:
                        await response.aread()
                        failure = results.api_error(response)
                        delay = follower.after_answer(failure)
            except httpx.TransportError as exc:
                failure = exc
                delay = follower.after_drop(exc)
            if failure is not None and budget is not None and time.monotonic() - started + delay > budget:
                if isinstance(failure, ApiError):
                    raise failure
                raise results.connection_error(self._config.base_url, failure) from failure
            await asyncio.sleep(delay)
