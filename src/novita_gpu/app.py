"""create_app(settings): the FastAPI application, and the lifespan that wires and starts its parts.

With no NOVITA_API_KEY the built-in emulator is started in this process on a loopback port and reached
over real HTTP: the same client code path as production.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import structlog
from fastapi import Depends, FastAPI

from novita_gpu import __version__
from novita_gpu.audit.router import router as audit_router
from novita_gpu.autostop.router import router as autostop_router
from novita_gpu.cache.router import router as cache_router
from novita_gpu.catalog.router import router as catalog_router
from novita_gpu.costs.router import router as costs_router
from novita_gpu.events.router import router as events_router
from novita_gpu.instances.cached_reads import CachedInstanceReads
from novita_gpu.instances.router import router as instances_router
from novita_gpu.kit.clock import Clock, SystemClock
from novita_gpu.kit.settings import Settings
from novita_gpu.observability.logging import configure_logging, register_secret
from novita_gpu.observability.metrics import Metrics
from novita_gpu.observability.router import router as observability_router
from novita_gpu.pools.router import router as pools_router
from novita_gpu.services import Services, build_services
from novita_gpu.teams.router import router as teams_router
from novita_gpu.volumes.router import router as volumes_router
from novita_gpu.web.audit_middleware import AuditMiddleware
from novita_gpu.web.auth import ApiKeys, current_owner
from novita_gpu.web.docs_page import install_docs_page
from novita_gpu.web.errors import ERROR_RESPONSES, install_error_handlers
from novita_gpu.web.host_guard import HostGuard, answered_hosts
from novita_gpu.web.middleware import RequestContextMiddleware
from novita_gpu.web.query_params import refuse_unknown_query
from novita_gpu.web.responses import JSONResponse
from novita_gpu.web.ui import install_ui

log = structlog.get_logger(__name__)

FULL_COLLECTION_EVERY = 100  # middle-generation collections per full one (CPython's default: 10)


def _register_secrets(settings: Settings) -> None:
    for secret in [
        settings.novita_api_key,
        settings.upstash_redis_rest_token,
        settings.metrics_token,
        *settings.api_keys,
        *settings.admin_api_keys,
        *settings.webhook_secret,
    ]:
        if secret is not None:
            register_secret(secret.get_secret_value())


def create_app(
    settings: Settings | None = None, clock: Clock | None = None, services: Services | None = None
) -> FastAPI:
    """The app. Its lifespan builds the services, starts their workers and closes them on shutdown;
    `services` already built (tests) are used as they are, and closing them is their builder's job."""
    settings = services.settings if services is not None else settings or Settings()
    clock = services.clock if services is not None else clock or SystemClock()
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _register_secrets(settings)
    # Made up front: the request middleware records into it from the first request.
    metrics = services.metrics if services is not None else Metrics()
    given = services

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if given is not None:
            yield
            return
        services = await build_services(settings, clock, metrics)
        _attach(app, services)
        # Start-up objects live for the whole run: keep them out of every later collection, whose pauses
        # otherwise show in the latency tail. And full collections, which scan every long-lived object,
        # ran every few seconds under the API load with the default threshold: one per 100
        # middle-generation passes instead (docs/performance.md).
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
        if settings.workers_enabled:
            services.start_workers()
        log.info("service_started", mode=settings.mode, version=__version__)
        try:
            yield
        finally:
            await services.aclose()
            log.info("service_stopped")

    app = FastAPI(
        title="Novita GPU control plane",
        version=__version__,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        responses=ERROR_RESPONSES,
        docs_url=None,  # /docs is web/docs_page.py's: Swagger UI from the package, not from a CDN
        redoc_url=None,  # ReDoc too loads from a CDN (and Google Fonts): blank offline, so not served
        dependencies=[Depends(refuse_unknown_query)],  # `?stauts=ready` is a 400 naming it, on every route
    )
    app.state.api_keys = ApiKeys(
        [k.get_secret_value() for k in settings.api_keys], [k.get_secret_value() for k in settings.admin_api_keys]
    )
    app.state.metrics = metrics
    if given is not None:
        _attach(app, given)
    install_error_handlers(app)
    app.include_router(instances_router)  # first: its GET by id is the hottest route
    app.include_router(autostop_router)
    app.include_router(teams_router)
    app.include_router(observability_router)
    app.include_router(catalog_router)
    app.include_router(events_router)
    app.include_router(costs_router)
    app.include_router(volumes_router)
    app.include_router(pools_router)
    app.include_router(audit_router)
    app.include_router(cache_router, dependencies=[Depends(current_owner)])
    install_docs_page(app)  # after the API routes, which are matched first
    install_ui(app)  # the dashboard at /ui

    app.add_middleware(CachedInstanceReads)  # inside the request middleware: ids, metrics, access log
    app.add_middleware(HostGuard, answered=answered_hosts(settings))  # before any answer, cached ones too
    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(AuditMiddleware)  # outermost: a row for each mutating request, as its answer went
    return app


def _attach(app: FastAPI, services: Services) -> None:
    app.state.services = services
    app.state.api_keys.store = services.keys  # keys kept in the store (teams/keys.py)
    app.state.caches = services.caches
