"""The cache routes over a real app: stats shape, clearing by name, and refusing anything else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI

from novita_gpu.cache import CacheRegistry, MemoryBackend, NamedCache
from novita_gpu.cache.router import router
from novita_gpu.kit.clock import ManualClock
from novita_gpu.web.errors import install_error_handlers


@pytest.fixture
def store() -> MemoryBackend:
    return MemoryBackend(ManualClock())


@pytest.fixture
async def registry(store: MemoryBackend) -> CacheRegistry:
    registry = CacheRegistry(store)
    for name, ttl in (("products", 300.0), ("templates", 600.0)):
        cache: NamedCache[object] = NamedCache(name, store, ttl=ttl, dump=orjson.dumps, load=orjson.loads)
        registry.register(cache)
        await cache.set("a", {"name": name})
    await registry.get("products").set("b", {"name": "b"})
    await store.set("instances:i-1", b"not a cache entry", ttl=600)
    return registry


@pytest.fixture
async def client(registry: CacheRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.caches = registry
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        yield client


async def test_stats_lists_every_cache_with_live_figures(client: httpx.AsyncClient, registry: CacheRegistry) -> None:
    await registry.get("products").get("a")
    await registry.get("products").get("missing")

    response = await client.get("/api/cache/stats")

    assert response.status_code == 200
    assert response.json() == {
        "backend": "memory",
        "degraded": False,
        "caches": {
            "products": {"hits": 1, "misses": 1, "hitRatio": 0.5, "size": 2, "ttl": 300.0},
            "templates": {"hits": 0, "misses": 0, "hitRatio": 0.0, "size": 1, "ttl": 600.0},
        },
    }


async def test_clear_one_cache_leaves_the_others(client: httpx.AsyncClient, registry: CacheRegistry) -> None:
    response = await client.post("/api/cache/clear", json={"cacheName": "products"})

    assert response.status_code == 200
    assert response.json() == {"cleared": {"products": 2}}
    assert await registry.get("products").get("a") is None
    assert await registry.get("templates").get("a") == {"name": "templates"}


@pytest.mark.parametrize("request_body", [{}, {"json": {}}, {"json": {"cacheName": None}}])
async def test_clear_without_a_name_clears_every_cache(
    client: httpx.AsyncClient, store: MemoryBackend, request_body: dict[str, object]
) -> None:
    response = await client.post("/api/cache/clear", **request_body)  # type: ignore[arg-type]

    assert response.status_code == 200
    assert response.json() == {"cleared": {"products": 2, "templates": 1}}
    assert await store.get("instances:i-1") == b"not a cache entry"


@pytest.mark.parametrize("name", ["*", "instances", "products:*", "prod*", "", 7, ["products"], {"a": 1}])
async def test_anything_but_a_registered_name_is_refused(
    client: httpx.AsyncClient, store: MemoryBackend, name: object
) -> None:
    response = await client.post("/api/cache/clear", json={"cacheName": name})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "UNKNOWN_CACHE"
    assert "products, templates" in error["message"]
    assert await store.count_prefix("") == 4


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/cache/clear", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_JSON"
