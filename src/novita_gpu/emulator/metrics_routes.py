"""Novita's monitoring endpoint, which lives under /openapi/v1 rather than the GPU instance API's
/gpu-instance/openapi/v1 (auth and faults are applied by gateway.py, as for every API path)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from novita_gpu.emulator.api_routes import world_of
from novita_gpu.emulator.errors import invalid_param
from novita_gpu.emulator.utilization import metrics_query

METRICS_PREFIX = "/openapi/v1"

router = APIRouter(prefix=METRICS_PREFIX)


@router.get("/metrics/gpu/instance")
async def instance_metrics(request: Request) -> dict[str, Any]:
    """cpu/mem/rootDisk series and gpu/gpuMem `{avg, gpuIds}`; unreadable parameters take Novita's defaults."""
    world = world_of(request)
    params = dict(request.query_params)
    instance_id = params.get("instanceId", "")
    if not instance_id:
        raise invalid_param("instanceId is required")
    return world.metrics(instance_id, metrics_query(params, world.now()))
