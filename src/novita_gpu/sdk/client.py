"""The blocking client. Each method sends one `Call` from `calls`; `AsyncClient` mirrors it with `await`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Literal, Unpack

import httpx

from novita_gpu.sdk import answers, calls
from novita_gpu.sdk.calls import Call, CreateOptions, Json
from novita_gpu.sdk.config import DEFAULT_URL, ClientConfig
from novita_gpu.sdk.retry import RetryPolicy
from novita_gpu.sdk.waiting import Wait


class Client:
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
        self._config = ClientConfig(base_url, api_key, timeout, retry or RetryPolicy())
        self._http = httpx.Client(**self._config.httpx_options())

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def __repr__(self) -> str:
        return self._config.describe(type(self).__name__)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: Call) -> Json:
        attempt = 1
        while True:
            try:
                response = self._http.request(**call.request_options(self._config.timeout))
            except httpx.TransportError as exc:
                delay = self._config.retry.after_error(call, exc, attempt)
                if delay is None:
                    raise answers.connection_error(self._config.base_url, exc) from exc
            else:
                delay = self._config.retry.after_response(call, response, attempt)
                if delay is None:
                    return answers.result(call, response)
            time.sleep(delay)
            attempt += 1

    # -- instances ---------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        product_name: str,
        template_id: str | int,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[CreateOptions],
    ) -> Json:
        """Create an instance (201, status "creating"). Each call sends an Idempotency-Key (a fresh one unless
        given), so its retries never make a second instance."""
        return self._send(calls.create(name, product_name, template_id, options, idempotency_key))

    def get(self, instance_id: str) -> Json:
        return self._send(calls.get(instance_id))

    def get_by_name(self, name: str) -> Json:
        """The live instance called `name` (else the newest one); `ApiError` 404 when there is none."""
        return answers.named(self._send(calls.list_page(name=name, limit=1)), name)

    def list_instances(
        self,
        *,
        status: str | Iterable[str] | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Json:
        """One page, newest first: `{instances, total, nextCursor}`."""
        return self._send(calls.list_page(status, name, limit, cursor))

    def iter_instances(
        self, *, status: str | Iterable[str] | None = None, name: str | None = None, page_size: int = 100
    ) -> Iterator[Json]:
        """Every matching instance, following `nextCursor` page after page."""
        cursor: str | None = None
        while True:
            page = self._send(calls.list_page(status, name, page_size, cursor))
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
    ) -> Json:
        """Long-poll until the instance has `status`. Raises `InstanceFailed` when it ends failed/terminated
        instead, `WaitTimeout` after `timeout` seconds."""
        wait = Wait(instance_id, status, timeout, poll_timeout)
        while (done := wait.outcome(self._send(wait.next_call()))) is None:
            pass
        return done

    def start(self, instance_id: str, *, webhook_url: str | None = None, health_check_path: str | None = None) -> Json:
        return self._send(calls.start(instance_id, webhook_url, health_check_path))

    def start_by_name(self, name: str, *, webhook_url: str | None = None, health_check_path: str | None = None) -> Json:
        return self._send(calls.start_by_name(name, webhook_url, health_check_path))

    def stop(self, instance_id: str) -> Json:
        return self._send(calls.stop(instance_id))

    def stop_by_name(self, name: str) -> Json:
        return self._send(calls.by_name("stop", name))

    def delete(self, instance_id: str) -> Json:
        """Delete upstream and mark terminated (the record is kept)."""
        return self._send(calls.delete(instance_id))

    def delete_by_name(self, name: str) -> Json:
        return self._send(calls.by_name("delete", name))

    def touch(self, instance_id: str) -> Json:
        """Mark the instance used now, deferring its auto-stop."""
        return self._send(calls.touch(instance_id))

    def events(self, instance_id: str) -> Json:
        """Status history with webhook deliveries: `{instanceId, events}`."""
        return self._send(calls.events(instance_id))

    def sync(self) -> Json:
        """Reconcile with Novita now; returns counts."""
        return self._send(calls.sync())

    # -- catalog, auto-stop, service ---------------------------------------------------------------

    def products(
        self,
        product_name: str | None = None,
        *,
        billing_mode: Literal["onDemand", "spot"] | None = None,
        gpu_num: int | None = None,
    ) -> Json:
        return self._send(calls.products(product_name, billing_mode, gpu_num))

    def templates(self, name: str | None = None) -> Json:
        return self._send(calls.templates(name))

    def autostop_stats(self) -> Json:
        return self._send(calls.autostop_stats())

    def autostop_trigger(self, *, dry_run: bool = True) -> Json:
        """Run an auto-stop sweep now; with `dry_run` only report what it would stop."""
        return self._send(calls.autostop_trigger(dry_run))

    def health(self) -> Json:
        """The health report, also when the service is unhealthy (HTTP 503)."""
        return self._send(calls.health())

    def metrics(self) -> Json:
        return self._send(calls.metrics())

    def cache_stats(self) -> Json:
        return self._send(calls.cache_stats())

    def clear_cache(self, cache_name: str | None = None) -> Json:
        return self._send(calls.clear_cache(cache_name))
