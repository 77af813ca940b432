"""The service's collaborators, built once, started, and closed with one `aclose()`.

`build_services(settings, clock)` opens the store (migrating it), the Novita client (or starts the built-in
emulator when no NOVITA_API_KEY is set), caches, the instance service and the background workers. The
app's lifespan builds them (or is handed a set already built, as the tests do), starts the workers, and
closes everything on shutdown; nothing below the entry points imports the module that assembles the app.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from novita_gpu.audit.recorder import AuditRecorder
from novita_gpu.autostop.gpu_poller import GpuPoller
from novita_gpu.autostop.sweeper import AutoStopSweeper
from novita_gpu.cache.registry import CacheRegistry, build_cache_backend
from novita_gpu.catalog.service import Catalog
from novita_gpu.costs.budgets import Budgets
from novita_gpu.events.stream import EventHub
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.readiness import Prober
from novita_gpu.instances.reconciler import Reconciler
from novita_gpu.instances.recovery import fill_policies
from novita_gpu.instances.service import InstanceService
from novita_gpu.instances.store_upstream import MixedUpstreams, claim_store, emulator_upstream, novita_upstream
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.workers import PeriodicWorker, stop_workers, worker_status
from novita_gpu.novita import NovitaClient
from novita_gpu.observability.logging import register_secret
from novita_gpu.observability.metrics import Metrics
from novita_gpu.observability.upstream import UpstreamHealth, announce_reachability
from novita_gpu.pools.keeper import PoolKeeper
from novita_gpu.pools.service import PoolService
from novita_gpu.retention import Retention
from novita_gpu.teams.keys import KeyStore, environment_key_id
from novita_gpu.teams.service import TeamService, ensure_teams
from novita_gpu.volumes.service import VolumeService
from novita_gpu.volumes.worker import VolumeWorker
from novita_gpu.webhooks.dispatcher import WebhookDispatcher
from novita_gpu.webhooks.guard import WebhookPolicy
from novita_gpu.webhooks.sender import WebhookSender

if TYPE_CHECKING:
    from novita_gpu.emulator.embedded import BuiltinEmulator

log = structlog.get_logger(__name__)

EMULATOR_API_KEY = "emulator-local-key"


@dataclass
class Services:
    """Everything a request handler or worker may need, built once per app."""

    settings: Settings
    clock: Clock
    db: Database
    metrics: Metrics
    client: NovitaClient
    caches: CacheRegistry
    catalog: Catalog
    instances: InstanceService
    reconciler: Reconciler
    prober: Prober
    sweeper: AutoStopSweeper
    gpu_poller: GpuPoller
    budgets: Budgets
    keys: KeyStore
    teams: TeamService
    volumes: VolumeService
    volume_worker: VolumeWorker
    pools: PoolService
    pool_keeper: PoolKeeper
    retention: Retention
    dispatcher: WebhookDispatcher
    webhook_sender: WebhookSender
    upstream_health: UpstreamHealth
    events: EventHub
    audit: AuditRecorder
    started_monotonic: float
    emulator: BuiltinEmulator | None = None
    workers: list[PeriodicWorker] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def emulator_url(self) -> str | None:
        return self.emulator.url if self.emulator is not None else None

    def worker_health(self, now: datetime) -> dict[str, Any]:
        return {w.name: worker_status(w.last_run_at, now, w.allowed_gap) for w in self.workers}

    def start_workers(self) -> None:
        self.workers = [
            self.reconciler,
            self.prober,
            self.sweeper,
            self.gpu_poller,
            self.budgets,
            self.volume_worker,
            self.pool_keeper,
            self.dispatcher,
            self.retention,
        ]
        self._tasks = [asyncio.create_task(worker.run(), name=worker.name) for worker in self.workers]
        if self.emulator is None:
            self._tasks.append(asyncio.create_task(announce_reachability(self.client), name="announce_upstream"))

    async def aclose(self) -> None:
        """Graceful: streams end, workers claim nothing more and finish what is in flight (bounded by
        SHUTDOWN_GRACE_SECONDS) and release their leases; then every connection is closed."""
        await self.events.close()  # streams end first: uvicorn waits for open responses
        await stop_workers(self.workers, self._tasks, self.settings.shutdown_grace_seconds)
        await self.reconciler.aclose()  # when no worker ran (tests): rows still in flight, leases held
        await self.client.aclose()
        await self.webhook_sender.close()
        await self.caches.aclose()
        await self.db.dispose()
        if self.emulator is not None:
            await self.emulator.stop()


async def _upstream(settings: Settings) -> tuple[str, str, BuiltinEmulator | None]:
    """Novita's base URL and key, starting the built-in emulator when no key is configured."""
    if not settings.emulator_mode:
        assert settings.novita_api_key is not None
        return settings.novita_api_base_url, settings.novita_api_key.get_secret_value(), None
    from novita_gpu.emulator.embedded import start_builtin_emulator

    emulator = await start_builtin_emulator(settings)
    log.warning(
        "emulator_mode",
        message="NOVITA_API_KEY is not set: using the built-in Novita emulator (no real GPUs are created)",
        emulator_url=emulator.url,
        speed=settings.emulator_speed,
        state=str(emulator.state.path),
    )
    return emulator.api_url, EMULATOR_API_KEY, emulator


async def build_services(settings: Settings, clock: Clock, metrics: Metrics | None = None) -> Services:
    """Open and wire everything (migrating the store); the caller starts the workers and closes it all."""
    metrics = metrics or Metrics()
    base_url, api_key, emulator = await _upstream(settings)
    register_secret(api_key)
    upstream_health = UpstreamHealth(clock)

    def observe(endpoint: str, outcome: str, seconds: float) -> None:
        metrics.observe_upstream(endpoint, outcome, seconds)
        if not endpoint.startswith("metrics."):  # Novita's monitoring API failing leaves instances manageable
            upstream_health.observe(endpoint, outcome, seconds)

    db = Database(settings.database_url, pool_size=settings.database_pool_size)
    await db.migrate()
    await fill_policies(db, settings)
    keys = KeyStore(db, clock)
    environment = [*settings.api_keys, *settings.admin_api_keys]
    await ensure_teams(db, clock, sorted({environment_key_id(k.get_secret_value()) for k in environment} | {"default"}))
    try:
        await claim_store(db, emulator_upstream(emulator.state.account()) if emulator else novita_upstream())
    except MixedUpstreams:
        await db.dispose()
        if emulator is not None:
            await emulator.stop()
        raise
    if emulator is not None and (moved_from := emulator.moved_from):
        from novita_gpu.emulator.embedded import move_port_urls

        await move_port_urls(db, moved_from, emulator.url)
    client = NovitaClient(
        base_url,
        api_key,
        timeout=settings.novita_timeout_seconds,
        retry_deadline=settings.novita_retry_deadline_seconds,
        observer=observe,
    )
    caches = CacheRegistry(build_cache_backend(settings, clock))
    catalog = Catalog(client, caches, settings.catalog_cache_ttl_seconds, on_lookup=metrics.observe_cache)
    changes = ChangeFeed()
    prober = Prober(db, clock, settings, changes, on_ready=metrics.observe_ready, observer=metrics)
    reconciler = Reconciler(db, clock, client, catalog, settings, changes, metrics)
    policy = WebhookPolicy.from_settings(settings)
    volumes = VolumeService(db, clock, catalog, client)
    instances = InstanceService(db, clock, catalog, settings, policy, changes, volumes)
    webhook_sender = WebhookSender(policy, settings.webhook_timeout_seconds)
    dispatcher = WebhookDispatcher(db, clock, webhook_sender, settings, metrics, on_instance_change=changes.pulse)
    sweeper = AutoStopSweeper(db, clock, instances, settings, metrics)
    gpu_poller = GpuPoller(db, clock, client, settings, changes)
    budgets = Budgets(db, clock, instances, settings, metrics, policy)
    volume_worker = VolumeWorker(db, clock, client, settings)
    teams = TeamService(db, clock, settings, keys, budgets)
    audit = AuditRecorder(db, clock)
    pools = PoolService(db, clock, settings, instances)
    pools.on_claim = metrics.observe_claim
    pool_keeper = PoolKeeper(db, clock, settings, pools, client)
    instances.pool_returns = pools.take_back  # a stop that returns a claimed member to its pool
    reconciler.actions.start_refused = pools.start_refused  # a member's start refused for capacity moves on

    # Who wakes whom: every wake-up of a worker by another part is wired here, and only here (signals.py).
    # Each signal fires on the news its worker acts on, so a create wakes the reconciler and the dispatcher
    # (its outbox row), never the prober or the sweeper.
    instances.changed.subscribe(reconciler.wake)  # a goal changed: act on it now
    if settings.workers_enabled:  # a create accepted goes out at once (tests drive the reconciler by ticks)
        instances.created.subscribe(reconciler.created)
        instances.room_for_create = reconciler.room_for_create  # ... and a burst it cannot send waits
    reconciler.health_checking.subscribe(prober.wake)  # probe at once rather than at the prober's next pass
    gpu_poller.idle_found.subscribe(sweeper.wake)  # an idle verdict may end an instance now
    changes.subscribe(dispatcher.wake)  # every committed write may have queued webhooks: they go out at once
    budgets.exceeded.subscribe(dispatcher.wake)  # budget.exceeded queued its webhooks: out at once
    volumes.changed.subscribe(volume_worker.wake)  # a volume create or delete recorded: carried out now
    pools.changed.subscribe(pool_keeper.wake)  # a claim, return or new target: the pool refills now
    instances.recovery_observer = metrics
    instances.budget_guard = budgets.guard  # creates (and stopAll starts) refused once a budget is spent
    retention = Retention(db, clock, settings, metrics, on_instances_deleted=lambda: changes.pulse(None))
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        metrics=metrics,
        client=client,
        caches=caches,
        catalog=catalog,
        instances=instances,
        reconciler=reconciler,
        prober=prober,
        sweeper=sweeper,
        gpu_poller=gpu_poller,
        budgets=budgets,
        keys=keys,
        teams=teams,
        volumes=volumes,
        volume_worker=volume_worker,
        pools=pools,
        pool_keeper=pool_keeper,
        retention=retention,
        dispatcher=dispatcher,
        webhook_sender=webhook_sender,
        upstream_health=upstream_health,
        events=EventHub(db, changes, settings),
        audit=audit,
        started_monotonic=clock.monotonic(),
        emulator=emulator,
    )
