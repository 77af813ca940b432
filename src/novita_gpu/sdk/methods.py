"""Every call of the API that is one request, written once for both clients.

Each method builds its `Call` (from `calls`) and hands it to `_send`: the blocking client's `_send` returns
the answer, the asyncio client's returns an awaitable of it, so `Client.get(...)` answers and
`AsyncClient.get(...)` is awaited. Methods that take several requests (waiting, paging) live in each client.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Generic, Literal, TypeVar, Unpack

from novita_gpu.sdk import calls
from novita_gpu.sdk.calls import Call, CreateOptions
from novita_gpu.sdk.config import ClientConfig, service_url
from novita_gpu.sdk.retry import RetryPolicy

Answer = TypeVar("Answer")


class Methods(ABC, Generic[Answer]):
    def __init__(self, base_url: str, api_key: str | None, timeout: float, retry: RetryPolicy | None) -> None:
        self._config = ClientConfig(service_url(base_url), api_key, timeout, retry or RetryPolicy())

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def __repr__(self) -> str:
        return self._config.describe(type(self).__name__)

    @abstractmethod
    def _send(self, call: Call) -> Answer:
        """Send `call` (retrying as its policy allows) and give its answer."""

    # -- instances ---------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        product_name: str,
        template_id: str | int,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[CreateOptions],
    ) -> Answer:
        """Create an instance (201, status "creating"). Each call sends an Idempotency-Key (a fresh one unless
        given), so its retries never make a second instance."""
        return self._send(calls.create(name, product_name, template_id, options, idempotency_key))

    def get(self, instance_id: str) -> Answer:
        return self._send(calls.get(instance_id))

    def list_instances(
        self,
        *,
        status: str | Iterable[str] | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Answer:
        """One page, newest first: `{instances, total, nextCursor}`; `labels` keeps the instances that
        carry all of them."""
        return self._send(calls.list_page(status, name, limit, cursor, labels))

    def start(
        self, instance_id: str, *, webhook_url: str | None = None, health_check_path: str | None = None
    ) -> Answer:
        return self._send(calls.start(instance_id, webhook_url, health_check_path))

    def start_by_name(
        self, name: str, *, webhook_url: str | None = None, health_check_path: str | None = None
    ) -> Answer:
        return self._send(calls.start_by_name(name, webhook_url, health_check_path))

    def stop(self, instance_id: str) -> Answer:
        return self._send(calls.stop(instance_id))

    def stop_by_name(self, name: str) -> Answer:
        return self._send(calls.by_name("stop", name))

    def delete(self, instance_id: str) -> Answer:
        """Delete upstream and mark terminated (the record is kept)."""
        return self._send(calls.delete(instance_id))

    def delete_by_name(self, name: str) -> Answer:
        return self._send(calls.by_name("delete", name))

    def touch(self, instance_id: str) -> Answer:
        """Mark the instance used now, deferring its auto-stop."""
        return self._send(calls.touch(instance_id))

    def events(self, instance_id: str) -> Answer:
        """Status history with webhook deliveries: `{instanceId, events}`."""
        return self._send(calls.events(instance_id))

    def sync(self) -> Answer:
        """Reconcile with Novita now; returns counts."""
        return self._send(calls.sync())

    # -- catalog, auto-stop, service ---------------------------------------------------------------

    def products(
        self,
        product_name: str | None = None,
        *,
        billing_mode: Literal["onDemand", "spot"] | None = None,
        gpu_num: int | None = None,
    ) -> Answer:
        return self._send(calls.products(product_name, billing_mode, gpu_num))

    def templates(self, name: str | None = None) -> Answer:
        return self._send(calls.templates(name))

    def autostop_stats(self) -> Answer:
        return self._send(calls.autostop_stats())

    def autostop_trigger(self, *, dry_run: bool = True) -> Answer:
        """Run an auto-stop sweep now; with `dry_run` only report what it would stop."""
        return self._send(calls.autostop_trigger(dry_run))

    # -- costs and budgets --------------------------------------------------------------------------

    def costs(self, *, start: str | None = None, end: str | None = None, group_by: str | None = None) -> Answer:
        """What Novita billed over a period (ISO 8601 `start`/`end`; default this month so far), grouped by
        `product`, `apiKey` or `label:<key>`: `{totalUsd, groups, instances, ...}`."""
        return self._send(calls.costs(start, end, group_by))

    def budget(self, *, api_key: str | None = None) -> Answer:
        """Your budget with spend so far and the projected month end (an admin key may name `api_key`)."""
        return self._send(calls.budget(api_key))

    def set_budget(
        self,
        monthly_limit_usd: float,
        *,
        on_exceeded: Literal["refuseCreates", "stopAll"] | None = None,
        webhook_url: str | None = None,
        api_key: str | None = None,
    ) -> Answer:
        """Set the monthly budget (USD, calendar month in UTC). `on_exceeded` left out is the server's
        default, refuseCreates; `stopAll` also stops the key's instances once it is spent. An admin key may
        name another key's id as `api_key`."""
        return self._send(calls.set_budget(monthly_limit_usd, on_exceeded, webhook_url, api_key))

    def clear_budget(self, *, api_key: str | None = None) -> Answer:
        """Remove the budget; the answer is the key's spend without one (`monthlyLimitUsd` null)."""
        return self._send(calls.clear_budget(api_key))

    def budget_events(self, *, api_key: str | None = None) -> Answer:
        """The key's `budget.exceeded` events, newest first, each with its webhook deliveries."""
        return self._send(calls.budget_events(api_key))

    def health(self) -> Answer:
        """The health report, also when the service is unhealthy (HTTP 503)."""
        return self._send(calls.health())

    def metrics(self) -> Answer:
        return self._send(calls.metrics())

    def cache_stats(self) -> Answer:
        return self._send(calls.cache_stats())

    def clear_cache(self, cache_name: str | None = None) -> Answer:
        return self._send(calls.clear_cache(cache_name))
