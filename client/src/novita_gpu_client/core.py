"""What both clients do, written once: each operation is a coroutine that reaches the service only through a
`Transport`.

Every request is described once (`calls.Call`); sending it with retries, waiting for a status, paging and
following the event stream are the coroutines below, and neither client has a loop of its own.
`AsyncClient` awaits them with a transport over `httpx.AsyncClient`. `Client` runs the very same coroutines
with a transport over `httpx.Client` whose methods block and never suspend, so each coroutine runs to its
end in a single step (`run_blocking`): no event loop, no thread, and the caller's own loop (a notebook's)
is never touched.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import httpx

from novita_gpu_client import calls, results
from novita_gpu_client.calls import Call, Json
from novita_gpu_client.config import ClientConfig
from novita_gpu_client.errors import ApiError
from novita_gpu_client.events import HEARTBEAT_TIMEOUT, Event, Follower, SseDecoder
from novita_gpu_client.waiting import Wait

T = TypeVar("T")

# An open streaming answer: the response (its body already read when it is an error) and its lines.
Streamed = tuple[httpx.Response, AsyncIterator[str]]


class Transport(Protocol):
    """How a client sends: the only thing the two clients do differently."""

    async def request(self, options: Mapping[str, Any]) -> httpx.Response:
        """One request (`Call.request_options`), its answer read whole; httpx's errors propagate."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def stream(self, options: Mapping[str, Any]) -> AbstractAsyncContextManager[Streamed]:
        """A request whose answer is read line by line while it lasts (`Follower.request`)."""
        ...


async def send(transport: Transport, config: ClientConfig, call: Call) -> Json:
    """`call`'s answer, sent again as `config.retry` allows; `ApiError` or `ServiceConnectionError` else."""
    retry, started, attempt = config.retry, time.monotonic(), 1
    while True:
        began = time.monotonic()
        timeout = retry.attempt_timeout(config.timeout, began - started)
        try:
            response = await transport.request(call.request_options(timeout))
        except httpx.TransportError as exc:
            spent, took = time.monotonic() - started, time.monotonic() - began
            delay = retry.after_error(call, exc, attempt, spent=spent, took=took)
            if delay is None:
                raise results.connection_error(config.base_url, exc) from exc
        else:
            spent, took = time.monotonic() - started, time.monotonic() - began
            delay = retry.after_response(call, response, attempt, spent=spent, took=took)
            if delay is None:
                return results.result(call, response)
        await transport.sleep(delay)
        attempt += 1


async def get_by_name(transport: Transport, config: ClientConfig, name: str) -> Json:
    return results.named(await send(transport, config, calls.list_page(name=name, limit=1)), name)


async def iter_instances(
    transport: Transport,
    config: ClientConfig,
    status: str | Iterable[str] | None,
    name: str | None,
    page_size: int,
    labels: Mapping[str, str] | None,
) -> AsyncGenerator[Json, None]:
    cursor: str | None = None
    while True:
        page = await send(transport, config, calls.list_page(status, name, page_size, cursor, labels))
        for instance in page["instances"]:
            yield instance
        cursor = page.get("nextCursor")
        if not cursor:
            return


async def wait_for(
    transport: Transport,
    config: ClientConfig,
    instance_id: str,
    status: str | Iterable[str],
    timeout: float,
    poll_timeout: float,
    on_change: Callable[[Json], None] | None,
) -> Json:
    wait = Wait(instance_id, status, timeout, poll_timeout, on_change)
    while (done := wait.outcome(await send(transport, config, wait.next_call()))) is None:
        pass
    return done


async def iter_events(
    transport: Transport,
    config: ClientConfig,
    instance: str | None,
    after: int | None,
    follow: bool,
    give_up_after: float | None,
) -> AsyncGenerator[Event, None]:
    # Without `follow`, a call like any other: the retry policy's `give_up_after` bounds it.
    budget = None if follow else config.retry.give_up_after
    heartbeat = HEARTBEAT_TIMEOUT if budget is None else min(HEARTBEAT_TIMEOUT, budget)
    follower = Follower(instance, after, follow, heartbeat_timeout=heartbeat, give_up_after=give_up_after)
    started = time.monotonic()
    while True:
        failure: ApiError | httpx.TransportError | None = None
        connect = config.retry.attempt_timeout(config.timeout, time.monotonic() - started)
        try:
            async with transport.stream(follower.request(connect)) as (response, lines):
                if response.is_success:
                    follower.connected()
                    decoder = SseDecoder()
                    async for line in lines:
                        message = decoder.feed(line)
                        if message is not None and (event := follower.on_message(message)) is not None:
                            yield event
                    if follower.ended():
                        return
                    delay = follower.after_drop()
                else:
                    failure = results.api_error(response)
                    delay = follower.after_answer(failure)
        except httpx.TransportError as exc:
            failure = exc
            delay = follower.after_drop(exc)
        if failure is not None and budget is not None and time.monotonic() - started + delay > budget:
            if isinstance(failure, ApiError):
                raise failure
            raise results.connection_error(config.base_url, failure) from failure
        await transport.sleep(delay)


# -- running the coroutines without an event loop (the blocking client) ----------------------------------


def run_blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`, whose awaits never suspend (those of a blocking transport), to its end here and now."""
    try:
        work.send(None)
    except StopIteration as done:
        value: T = done.value
        return value
    work.close()
    raise RuntimeError("a blocking client's operation suspended: it may await its transport only")


def iter_blocking(items: AsyncGenerator[T, None]) -> Iterator[T]:
    """`items`, an async generator over a blocking transport, as a plain iterator. Leaving the loop early
    (or closing the iterator) closes `items`, which ends its open stream."""
    try:
        while True:
            try:
                item = run_blocking(items.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        run_blocking(items.aclose())
