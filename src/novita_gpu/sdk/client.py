"""The blocking client: the calls of `Methods`, answered, plus waiting and paging."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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


class Client(Methods[Json]):
    """A client for the control plane's HTTP API. Answers are the server's JSON objects (dicts); an error
    answer raises `ApiError`, an unreachable service `ServiceConnectionError`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retry)
        self._http = httpx.Client(**self._config.httpx_options())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: Call) -> Json:
        retry, started, attempt = self._config.retry, time.monotonic(), 1
        while True:
            began = time.monotonic()
            timeout = retry.attempt_timeout(self._config.timeout, began - started)
            try:
                response = self._http.request(**call.request_options(timeout))
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
            time.sleep(delay)
            attempt += 1

    def get_by_name(self, name: str) -> Json:
        """The live instance called `name` (else the newest one); `ApiError` 404 when there is none."""
        return results.named(self._send(calls.list_page(name=name, limit=1)), name)

    def iter_instances(
        self,
        *,
        status: str | Iterable[str] | None = None,
        name: str | None = None,
        page_size: int = 100,
        labels: Mapping[str, str] | None = None,
    ) -> Iterator[Json]:
        """Every matching instance, following `nextCursor` page after page."""
        cursor: str | None = None
        while True:
            page = self._send(calls.list_page(status, name, page_size, cursor, labels))
            yield from page["instances"]
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def wait_for(
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
        while (done := wait.outcome(self._send(wait.next_call()))) is None:
            pass
        return done

    def iter_events(
        self,
        instance: str | None = None,
        after: int | None = None,
        *,
        follow: bool = True,
        give_up_after: float | None = 300.0,
    ) -> Iterator[Event]:
        """Status changes as they happen: of one instance (its id) or of every instance of this key. With
        `after` (an event id; 0 for all kept) the stored events after it come first. After a dropped
        connection it reconnects with the last id by itself, so no event is missed or repeated; it raises
        only what a retry cannot fix, or after `give_up_after` seconds without a connection. With
        `follow=False` it ends after the stored events."""
        # Without `follow`, a call like any other: the retry policy's `give_up_after` bounds it.
        budget = None if follow else self._config.retry.give_up_after
        heartbeat = HEARTBEAT_TIMEOUT if budget is None else min(HEARTBEAT_TIMEOUT, budget)
        follower = Follower(instance, after, follow, heartbeat_timeout=heartbeat, give_up_after=give_up_after)
        started = time.monotonic()
        while True:
            failure: ApiError | httpx.TransportError | None = None
            connect = self._config.retry.attempt_timeout(self._config.timeout, time.monotonic() - started)
            try:
                with self._http.stream(**follower.request(connect)) as response:
                    if response.is_success:
                        follower.connected()
                        decoder = SseDecoder()
                        for line in response.iter_lines():
                            message = decoder.feed(line)
                            if message is not None and (event := follower.on_message(message)) is not None:
                                yield event
                        if follower.ended():
                            return
                        delay = follower.after_drop()
                    else:
                        response.read()
                        failure = results.api_error(response)
                        delay = follower.after_answer(failure)
            except httpx.TransportError as exc:
                failure = exc
                delay = follower.after_drop(exc)
            if failure is not None and budget is not None and time.monotonic() - started + delay > budget:
                if isinstance(failure, ApiError):
                    raise failure
                raise results.connection_error(self._config.base_url, failure) from failure
            time.sleep(delay)
