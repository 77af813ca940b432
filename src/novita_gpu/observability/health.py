"""GET /health: real checks, cheap enough to be called often.

unhealthy (HTTP 503): the store does not answer. degraded (HTTP 200): Novita failing, cache fallen back
to in-process, a worker not ticking, webhooks piling up, or instances past their deadline. Novita is judged from recent calls.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from novita_gpu import __version__
from novita_gpu.observability.schemas import HealthAnswer
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.responses import JSONResponse

if TYPE_CHECKING:
    from novita_gpu.services import Services

router = APIRouter(tags=["health"])

WEBHOOK_BACKLOG_DEGRADED = timedelta(minutes=5)


def worker_status(last: datetime | None, now: datetime, allowed_gap: float) -> dict[str, Any]:
    """up / stalled from a worker's last run (starting before its first)."""
    if last is None:
        return {"status": "starting"}
    age = (now - last).total_seconds()
    return {"status": "up" if age <= allowed_gap else "stalled", "lastRunSecondsAgo": round(age, 1)}


async def check_health(services: Services) -> tuple[int, dict[str, Any]]:
    settings = services.settings
    now = services.clock.now()
    checks: dict[str, Any] = {}
    try:
        # The backlog query doubles as the database round trip (timed for real, whatever the clock).
        started = time.perf_counter()
        async with asyncio.timeout(2.0):  # a context, not wait_for: no extra task, no extra loop pass
            pending, oldest_age = await services.dispatcher.backlog()
        latency = time.perf_counter() - started
        checks["database"] = {"status": "up", "latencyMs": round(latency * 1000, 2)}
        checks["webhooks"] = {
            "status": "degraded" if oldest_age > WEBHOOK_BACKLOG_DEGRADED.total_seconds() else "up",
            "pending": pending,
            "oldestPendingSeconds": round(oldest_age, 1),
        }
    except Exception as exc:  # the store is what everything stands on
        checks["database"] = {"status": "down", "error": type(exc).__name__}
        checks["webhooks"] = {"status": "unknown"}
    checks["novitaApi"] = {**services.upstream_health.status(), "mode": settings.mode}
    checks["cache"] = await services.caches.health()
    checks["workers"] = services.worker_health(now) if settings.workers_enabled else {"status": "disabled"}
    if checks["database"]["status"] == "up":
        checks["instances"] = await services.reconciler.overdue()

    if checks["database"]["status"] != "up":
        status = "unhealthy"
    elif (
        checks["novitaApi"]["status"] in ("down", "degraded")
        or checks["cache"]["status"] != "up"
        or checks["webhooks"]["status"] != "up"
        or checks.get("instances", {}).get("status") == "degraded"
        or any(isinstance(w, dict) and w.get("status") == "stalled" for w in checks["workers"].values())
    ):
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "uptime": round(services.clock.monotonic() - services.started_monotonic, 3),
        "version": __version__,
        "mode": settings.mode,
        "services": checks,
    }
    if settings.emulator_mode:
        body["emulator"] = {
            "url": services.emulator_url,
            "note": "NOVITA_API_KEY is not set: using the built-in emulator",
        }
    return (503 if status == "unhealthy" else 200), body


@router.get(
    "/health",
    summary="Service health from real checks",
    response_model=HealthAnswer,
    responses={503: {"model": HealthAnswer, "description": "Unhealthy (the same report)"}},
)
async def health(services: ServicesDep) -> JSONResponse:
    code, body = await check_health(services)
    return JSONResponse(body, status_code=code)
