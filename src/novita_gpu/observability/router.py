"""The observability endpoints: GET /health (its checks: health.py), GET /metrics (Prometheus text) and
GET /api/metrics (JSON with percentiles)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import func, select

from novita_gpu.kit.tables import Instance
from novita_gpu.observability.health import check_health
from novita_gpu.observability.schemas import HealthAnswer, MetricsAnswer
from novita_gpu.web.auth import Owner
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.metrics_access import metrics_reader
from novita_gpu.web.responses import JSONResponse

if TYPE_CHECKING:
    from novita_gpu.services import Services

router = APIRouter()

_INSTANCES_BY_STATUS = select(Instance.status, func.count()).group_by(Instance.status)


async def _is_administrator(request: Request) -> bool:
    """The caller may see every key's receivers: an owner key, or anybody when the service has no keys."""
    principal = await request.app.state.api_keys.principal(request.headers)
    return principal is not None and bool(principal.admin)


@router.get(
    "/health",
    tags=["health"],
    summary="Service health from real checks",
    response_model=HealthAnswer,
    responses={503: {"model": HealthAnswer, "description": "Unhealthy (the same report)"}},
)
async def health(request: Request, services: ServicesDep) -> JSONResponse:
    code, body = await check_health(services, detailed=await _is_administrator(request))
    return JSONResponse(body, status_code=code)


async def _refresh_instance_counts(services: Services) -> None:
    """Gauges read from the store when scraped (cheap aggregate queries)."""
    rows = await services.db.fetch(_INSTANCES_BY_STATUS)
    services.metrics.set_instance_counts({status: count for status, count in rows})
    await services.dispatcher.backlog()  # sets the backlog gauges
    await services.budgets.refresh_gauges()  # spend and budgets by API key


@router.get(
    "/metrics",
    tags=["observability"],
    summary="Prometheus metrics (METRICS_TOKEN or an admin key: they show every key's spend)",
    response_class=PlainTextResponse,
    dependencies=[Depends(metrics_reader)],
)
async def prometheus_metrics(services: ServicesDep) -> Response:
    await _refresh_instance_counts(services)
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)


@router.get(
    "/api/metrics", tags=["observability"], summary="Metrics as JSON with percentiles", response_model=MetricsAnswer
)
async def json_metrics(owner: Owner, services: ServicesDep) -> JSONResponse:
    await _refresh_instance_counts(services)
    return JSONResponse(services.metrics.summary())
