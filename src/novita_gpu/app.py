"""create_app(settings): the FastAPI application, and the lifespan that wires and starts its parts.

With no NOVITA_API_KEY the built-in emulator is started in this process on a loopback port and reached
over real HTTP: the same client code path as production.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import func, select

from novita_gpu import __version__
from novita_gpu.autostop.router import router as autostop_router
from novita_gpu.autostop.sweeper import AutoStopSweeper
from novita_gpu.cache.registry import CacheRegistry, build_cache_backend
from novita_gpu.cache.router import router as cache_router
from novita_gpu.catalog.router import router as catalog_router
from novita_gpu.catalog.service import Catalog
from novita_gpu.clock import Clock, SystemClock
from novita_gpu.db import Database
from novita_gpu.events.router import router as events_router
from novita_gpu.events.stream import EventHub
from novita_gpu.instances.cached_reads import CachedInstanceReads
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.models import Instance
from novita_gpu.instances.prober import Prober
from novita_gpu.instances.reconciler import Reconciler
from novita_gpu.instances.router import router as instances_router
from novita_gpu.instances.service import InstanceService
from novita_gpu.novita import NovitaClient
from novita_gpu.observability.answers import MetricsAnswer
from novita_gpu.observability.health import router as health_router
from novita_gpu.observability.health import worker_status
from novita_gpu.observability.logging import configure_logging, register_secret
from novita_gpu.observability.metrics import Metrics
from novita_gpu.observability.upstream import UpstreamHealth
from novita_gpu.retention import Retention
from novita_gpu.serving import BackgroundServer
from novita_gpu.settings import Settings
from novita_gpu.web.auth import ApiKeys, Owner, current_owner
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.docs_page import install_docs_page
from novita_gpu.web.errors import ERROR_RESPONSES, install_error_handlers
from novita_gpu.web.host_guard import HostGuard, answered_hosts
from novita_gpu.web.middleware import RequestContextMiddleware
from novita_gpu.web.responses import JSONResponse
from novita_gpu.web.ui import install_ui
from novita_gpu.webhooks.dispatcher import WebhookDispatcher
from novita_gpu.webhooks.guard import WebhookPolicy
from novita_gpu.webhooks.sender import WebhookSender
from novita_gpu.workers import PeriodicWorker, stop_workers

log = structlog.get_logger(__name__)

EMULATOR_API_KEY = "emulator-local-key"
FULL_COLLECTION_EVERY = 100  # middle-generation collections per full one (CPython's default: 10)


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
    retention: Retention
    dispatcher: WebhookDispatcher
    webhook_sender: WebhookSender
    upstream_health: UpstreamHealth
    events: EventHub
    started_monotonic: float
    emulator_url: str | None = None
    workers: list[PeriodicWorker] = field(default_factory=list)

    def worker_health(self, now: datetime) -> dict[str, Any]:
        return {w.name: worker_status(w.last_run_at, now, w.allowed_gap) for w in self.workers}


def _register_secrets(settings: Settings) -> None:
    for secret in [
        settings.novita_api_key,
        settings.upstash_redis_rest_token,
        *settings.api_keys,
        *settings.webhook_secret,
    ]:
        if secret is not None:
            register_secret(secret.get_secret_value())


async def _upstream(settings: Settings) -> tuple[str, str, BackgroundServer | None]:
    """Novita's base URL and key, starting the built-in emulator when no key is configured."""
    if not settings.emulator_mode:
        assert settings.novita_api_key is not None
        return settings.novita_api_base_url, settings.novita_api_key.get_secret_value(), None
    from novita_gpu.emulator.app import create_emulator_app
    from novita_gpu.emulator.config import EmulatorConfig
    from novita_gpu.emulator.state_file import StateFile, default_state_path

    # The emulated account lives on disk like the store, so a restart finds its instances where they were.
    state = StateFile(settings.emulator_state or default_state_path(settings.database_url))
    emulator = BackgroundServer(
        create_emulator_app(EmulatorConfig(speed=settings.emulator_speed, seed=settings.emulator_seed), state=state),
        port=settings.emulator_port,
    )
    await emulator.start()
    log.warning(
        "emulator_mode",
        message="NOVITA_API_KEY is not set: using the built-in Novita emulator (no real GPUs are created)",
        emulator_url=emulator.url,
        speed=settings.emulator_speed,
        state=str(state.path),
    )
    return f"{emulator.url}/gpu-instance/openapi", EMULATOR_API_KEY, emulator


async def build_services(settings: Settings, clock: Clock, metrics: Metrics, base_url: str, api_key: str) -> Services:
    upstream_health = UpstreamHealth(clock)

    def observe(endpoint: str, outcome: str, seconds: float) -> None:
        metrics.observe_upstream(endpoint, outcome, seconds)
        upstream_health.observe(endpoint, outcome, seconds)

    db = Database(settings.database_url)
    await db.migrate()
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
    prober = Prober(db, clock, settings, changes, on_ready=metrics.observe_ready)
    reconciler = Reconciler(db, clock, client, catalog, settings, changes, on_health_checking=prober.wake)
    policy = WebhookPolicy.from_settings(settings)
    instances = InstanceService(db, clock, catalog, settings, policy, changes, reconciler.wake)
    webhook_sender = WebhookSender(policy, settings.webhook_timeout_seconds)
    dispatcher = WebhookDispatcher(db, clock, webhook_sender, settings, metrics, on_instance_change=changes.pulse)
    changes.subscribe(lambda _instance_id: dispatcher.wake())  # new outbox rows go out at once
    sweeper = AutoStopSweeper(db, clock, instances, settings, metrics)
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
        retention=retention,
        dispatcher=dispatcher,
        webhook_sender=webhook_sender,
        upstream_health=upstream_health,
        events=EventHub(db, changes, settings),
        started_monotonic=clock.monotonic(),
    )


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _register_secrets(settings)
    metrics = Metrics()  # made up front: the request middleware records into it from the first request

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        base_url, api_key, emulator = await _upstream(settings)
        register_secret(api_key)
        services = await build_services(settings, clock, metrics, base_url, api_key)
        services.emulator_url = emulator.url if emulator else None
        app.state.services = services
        app.state.caches = services.caches
        # Start-up objects live for the whole run: keep them out of every later collection, whose pauses
        # otherwise show in the latency tail. And full collections, which scan every long-lived object
        # (7-8 ms with ~2,000 instances cached), ran every ~3 s under the API load with the default
        # threshold: one per 100 middle-generation passes instead (none in a 20 s run of that load).
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
        tasks: list[asyncio.Task[None]] = []
        if settings.workers_enabled:
            services.workers = [
                services.reconciler,
                services.prober,
                services.sweeper,
                services.dispatcher,
                services.retention,
            ]
            tasks = [asyncio.create_task(worker.run(), name=worker.name) for worker in services.workers]
        log.info("service_started", mode=settings.mode, version=__version__)
        try:
            yield
        finally:
            await services.events.close()  # streams end first: uvicorn waits for open responses
            # Graceful: claim nothing more, let upstream calls and webhook deliveries in flight finish
            # (bounded), release every lease held so another replica takes over at once.
            await stop_workers(services.workers, tasks, settings.shutdown_grace_seconds)
            await services.client.aclose()
            await services.webhook_sender.close()
            await services.caches.aclose()
            await services.db.dispose()
            if emulator is not None:
                await emulator.stop()
                emulator.app.state.world.close()
            log.info("service_stopped")

    app = FastAPI(
        title="Novita GPU control plane",
        version=__version__,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        responses=ERROR_RESPONSES,
        docs_url=None,  # /docs is web/docs_page.py's: Swagger UI from the package, not from a CDN
        redoc_url=None,  # ReDoc too loads from a CDN (and Google Fonts): blank offline, so not served
    )
    app.state.api_keys = ApiKeys([k.get_secret_value() for k in settings.api_keys])
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(instances_router)  # first: its GET by id is the hottest route
    app.include_router(autostop_router)
    app.include_router(health_router)
    app.include_router(catalog_router)
    app.include_router(events_router)
    app.include_router(cache_router, dependencies=[Depends(current_owner)])
    install_docs_page(app)  # after the API routes, which are matched first
    install_ui(app)  # the dashboard at /ui

    @app.get("/metrics", tags=["observability"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus_metrics(owner: Owner, services: ServicesDep) -> Response:
        await _refresh_instance_counts(services)
        body, content_type = services.metrics.render()
        return Response(body, media_type=content_type)

    @app.get(
        "/api/metrics",
        tags=["observability"],
        summary="Metrics as JSON with percentiles",
        response_model=MetricsAnswer,
    )
    async def json_metrics(owner: Owner, services: ServicesDep) -> JSONResponse:
        await _refresh_instance_counts(services)
        return JSONResponse(services.metrics.summary())

    app.add_middleware(CachedInstanceReads)  # inside the request middleware: ids, metrics, access log
    app.add_middleware(HostGuard, answered=answered_hosts(settings))  # before any answer, cached ones too
    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app


_INSTANCES_BY_STATUS = select(Instance.status, func.count()).group_by(Instance.status)


async def _refresh_instance_counts(services: Services) -> None:
    """Gauges read from the store when scraped (cheap aggregate queries)."""
    rows = await services.db.fetch(_INSTANCES_BY_STATUS)
    services.metrics.set_instance_counts({status: count for status, count in rows})
    await services.dispatcher.backlog()  # sets the backlog gauges
