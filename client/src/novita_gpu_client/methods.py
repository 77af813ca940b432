"""The clients' public methods, written once for both.

Each method describes its request (`calls`) or operation (`core`) and hands the coroutine to the client:
the blocking client runs it to its answer (`Client.get(...)` answers), the asyncio client returns it to be
awaited (`await AsyncClient.get(...)`); the iterators are plain or async iterators alike. A client only
says how it sends (its `Transport`) and how it hands answers back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Mapping
from typing import Any, Generic, Literal, TypeVar, Unpack

from novita_gpu_client import calls, core
from novita_gpu_client.calls import Call, CreateOptions, Json
from novita_gpu_client.config import DEFAULT_URL, ClientConfig, service_url
from novita_gpu_client.events import Event
from novita_gpu_client.pools import PoolMethods
from novita_gpu_client.retry import RetryPolicy
from novita_gpu_client.teams import TeamMethods
from novita_gpu_client.volumes import VolumeMethods

Answer = TypeVar("Answer")  # Json, or an awaitable of it
Instances = TypeVar("Instances")  # an iterator of Json, or an async one
Events = TypeVar("Events")  # an iterator of Event, or an async one


class Methods(
    VolumeMethods[Answer, Instances],
    TeamMethods[Answer, Instances],
    PoolMethods[Answer, Instances],
    ABC,
    Generic[Answer, Instances, Events],
):
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """A client of the service at `base_url` (`localhost:3000` gets its `http://`; another host without
        a scheme is refused: ValueError), sending `api_key` as a Bearer token. `timeout`: seconds for each
        request; `retry`: when a call is sent again (`RetryPolicy`)."""
        self._config = ClientConfig(service_url(base_url), api_key, timeout, retry or RetryPolicy())
        self._transport = self._connect(self._config.httpx_options())

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def __repr__(self) -> str:
        return self._config.describe(type(self).__name__)

    # -- what each client says: how it sends, and how it hands back what the coroutines give ----------

    @abstractmethod
    def _connect(self, httpx_options: dict[str, Any]) -> core.Transport:
        """The transport, over an httpx client made with these options."""

    @abstractmethod
    def _answer(self, work: Coroutine[Any, Any, Json]) -> Answer:
        """The answer of `work` (blocking), or `work` itself to be awaited."""

    @abstractmethod
    def _instances(self, items: AsyncGenerator[Json, None]) -> Instances: ...

    @abstractmethod
    def _events(self, items: AsyncGenerator[Event, None]) -> Events: ...

    def _send(self, call: Call) -> Answer:
        """Send `call` (retrying as its policy allows) and give its answer."""
        return self._answer(core.send(self._transport, self._config, call))

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
        given), so its retries never make a second instance. With `pool=NAME` it is a claim from that warm
        pool (as `claim`; the answer carries `claim: {pool, source}`, ready at once from a ready member)."""
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

    def get_by_name(self, name: str) -> Answer:
        """The live instance called `name` (else the newest one); `ApiError` 404 when there is none."""
        return self._answer(core.get_by_name(self._transport, self._config, name))

    def iter_instances(
        self,
        *,
        status: str | Iterable[str] | None = None,
        name: str | None = None,
        page_size: int = 100,
        labels: Mapping[str, str] | None = None,
    ) -> Instances:
        """Every matching instance, following `nextCursor` page after page."""
        return self._instances(core.iter_instances(self._transport, self._config, status, name, page_size, labels))

    def wait_for(
        self,
        instance_id: str,
        status: str | Iterable[str] = "ready",
        *,
        timeout: float = 600.0,
        poll_timeout: float = 30.0,
        on_change: Callable[[Json], None] | None = None,
    ) -> Answer:
        """Long-poll until the instance has `status`. Raises `InstanceFailed` when it ends failed/terminated
        instead, or (as its subclass `InstanceStopped`) is stopped, which it stays until someone starts it,
        and `WaitTimeout` after `timeout` seconds. `on_change(view)` hears of every status on the way."""
        work = core.wait_for(self._transport, self._config, instance_id, status, timeout, poll_timeout, on_change)
        return self._answer(work)

    def iter_events(
        self,
        instance: str | None = None,
        after: int | None = None,
        *,
        follow: bool = True,
        give_up_after: float | None = 300.0,
    ) -> Events:
        """Status changes as they happen: of one instance (its id) or of every instance of this key. With
        `after` (an event id; 0 for all kept) the stored events after it come first. After a dropped
        connection it reconnects with the last id by itself, so no event is missed or repeated; it raises
        only what a retry cannot fix, or after `give_up_after` seconds without a connection. With
        `follow=False` it ends after the stored events."""
        return self._events(core.iter_events(self._transport, self._config, instance, after, follow, give_up_after))

    def start(
        self, instance_id: str, *, webhook_url: str | None = None, health_check_path: str | None = None
    ) -> Answer:
        return self._send(calls.start(instance_id, webhook_url, health_check_path))

    def start_by_name(
        self, name: str, *, webhook_url: str | None = None, health_check_path: str | None = None
    ) -> Answer:
        return self._send(calls.start_by_name(name, webhook_url, health_check_path))

    def stop(self, instance_id: str, *, return_to_pool: bool = False) -> Answer:
        """Stop an instance (its record and disk are kept). With `return_to_pool`, a claimed pool instance
        goes back to its pool as a stopped member if the pool wants more idle members, else it is deleted:
        the answer's `message` says which. Other instances just stop."""
        return self._send(calls.stop(instance_id, return_to_pool))

    def stop_by_name(self, name: str, *, return_to_pool: bool = False) -> Answer:
        return self._send(calls.by_name("stop", name, return_to_pool))

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
