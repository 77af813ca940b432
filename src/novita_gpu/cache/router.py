"""GET /api/cache/stats and POST /api/cache/clear over the registry at `app.state.caches`.

Only registered cache names are accepted: no patterns, no free-form keys, so a request can never
reach another cache's entries (or anything that is not a cache).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from novita_gpu.cache.registry import CacheRegistry
from novita_gpu.web.errors import ApiError
from novita_gpu.web.json_body import StrictJSONRoute

router = APIRouter(prefix="/api/cache", tags=["cache"], route_class=StrictJSONRoute)


class CacheStatsOut(BaseModel):
    hits: int
    misses: int
    hitRatio: float = Field(ge=0, le=1)
    size: int
    ttl: float


class CachesOut(BaseModel):
    backend: str = Field(description='"memory", "redis" or "upstash"')
    degraded: bool = Field(description="true while a shared cache is unreachable and memory serves instead")
    caches: dict[str, CacheStatsOut]


# The caches the service registers (the catalog's); the document names them, a test holds them equal.
SERVICE_CACHES = ("clusters", "products", "templates")


class ClearIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"cacheName": "products"}, {}]})

    # Typed loosely on purpose: a wrong type is reported as UNKNOWN_CACHE with the valid names. The
    # document states what is accepted (it allowed {"cacheName": 0}, which is refused).
    cacheName: Annotated[
        Any,
        WithJsonSchema(
            {
                "anyOf": [{"type": "string", "enum": list(SERVICE_CACHES)}, {"type": "null"}],
                "description": "one cache to clear; omit it (or null) to clear every cache",
            }
        ),
    ] = None


class ClearOut(BaseModel):
    cleared: dict[str, int] = Field(description="entries removed, per cache")


def get_registry(request: Request) -> CacheRegistry:
    registry: CacheRegistry = request.app.state.caches
    return registry


Registry = Annotated[CacheRegistry, Depends(get_registry)]


@router.get("/stats", response_model=CachesOut)
async def cache_stats(registry: Registry) -> dict[str, Any]:
    return await registry.stats()


@router.post("/clear", response_model=ClearOut)
async def clear_cache(registry: Registry, body: Annotated[ClearIn | None, Body()] = None) -> dict[str, Any]:
    name = body.cacheName if body is not None else None
    if name is not None and (not isinstance(name, str) or name not in registry.names()):
        valid = ", ".join(registry.names()) or "(none registered)"
        raise ApiError(
            400,
            "UNKNOWN_CACHE",
            f"cacheName must be one of: {valid}; omit it to clear every cache.",
            details=[{"field": "cacheName", "message": f"must be one of: {valid}"}],
        )
    return {"cleared": await registry.clear(name)}
