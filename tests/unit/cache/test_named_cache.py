"""Named caches: typed values, live stats, single-flight loads; the registry and backend selection."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from pydantic import SecretStr

from novita_gpu.cache import (
    CacheRegistry,
    FallbackBackend,
    MemoryBackend,
    NamedCache,
    build_cache_backend,
)
from novita_gpu.cache.registry import LookupHook
from novita_gpu.kit.clock import ManualClock
from novita_gpu.kit.settings import Settings

Product = dict[str, object]


def products_cache(store: MemoryBackend, on_lookup: LookupHook | None = None) -> NamedCache[Product]:
    return NamedCache("products", store, ttl=300, dump=orjson.dumps, load=orjson.loads, on_lookup=on_lookup)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> MemoryBackend:
    return MemoryBackend(clock)


async def test_stats_count_hits_misses_and_live_size(store: MemoryBackend, clock: ManualClock) -> None:
    cache = products_cache(store)
    assert await cache.stats() == {"hits": 0, "misses": 0, "hitRatio": 0.0, "size": 0, "ttl": 300}

    assert await cache.get("rtx4090") is None
    await cache.set("rtx4090", {"id": "p1", "price": 0.69})
    assert await cache.get("rtx4090") == {"id": "p1", "price": 0.69}
    assert await cache.get("rtx4090") is not None
    await cache.set("a100", {"id": "p2"})

    assert await cache.stats() == {"hits": 2, "misses": 1, "hitRatio": 0.6667, "size": 2, "ttl": 300}
    clock.advance(300)
    assert (await cache.stats())["size"] == 0


async def test_lookup_hook_reports_each_lookup(store: MemoryBackend) -> None:
    seen: list[tuple[str, bool]] = []
    cache = products_cache(store, on_lookup=lambda name, hit: seen.append((name, hit)))
    await cache.get("x")
    await cache.set("x", {"id": 1})
    await cache.get("x")
    assert seen == [("products", False), ("products", True)]


async def test_concurrent_misses_share_one_load(store: MemoryBackend) -> None:
    cache = products_cache(store)
    release = asyncio.Event()
    calls = 0

    async def loader() -> Product:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"id": "p1"}

    waiters = [asyncio.create_task(cache.get_or_load("rtx4090", loader)) for _ in range(10)]
    while calls == 0:
        await asyncio.sleep(0)
    for _ in range(20):
        await asyncio.sleep(0)  # let every waiter reach the shared load
    release.set()

    assert await asyncio.gather(*waiters) == [{"id": "p1"}] * 10
    assert calls == 1
    assert await cache.get_or_load("rtx4090", loader) == {"id": "p1"}
    assert calls == 1
    stats = await cache.stats()
    assert (stats["hits"], stats["misses"], stats["size"]) == (1, 10, 1)


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached(store: MemoryBackend) -> None:
    cache = products_cache(store)
    release = asyncio.Event()

    async def failing() -> Product:
        await release.wait()
        raise RuntimeError("upstream down")

    waiters = [asyncio.create_task(cache.get_or_load("k", failing)) for _ in range(3)]
    for _ in range(20):
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)

    async def working() -> Product:
        return {"id": "ok"}

    assert await cache.get_or_load("k", working) == {"id": "ok"}


async def test_an_unreadable_entry_counts_as_a_miss_and_is_reloaded(store: MemoryBackend) -> None:
    cache = products_cache(store)
    await store.set("products:k", b"not json", ttl=60)

    async def loader() -> Product:
        return {"id": "fresh"}

    assert await cache.get_or_load("k", loader) == {"id": "fresh"}
    assert await cache.get("k") == {"id": "fresh"}


@pytest.mark.parametrize("name", ["*", "", "Products", "a:b", "prod[1]", "x" * 64])
def test_cache_names_are_plain_identifiers(store: MemoryBackend, name: str) -> None:
    with pytest.raises(ValueError):
        NamedCache(name, store, ttl=1, dump=orjson.dumps, load=orjson.loads)


async def test_registry_reports_and_clears_by_registered_name_only(store: MemoryBackend) -> None:
    registry = CacheRegistry(store)
    products = products_cache(store)
    templates: NamedCache[Product] = NamedCache("templates", store, ttl=60, dump=orjson.dumps, load=orjson.loads)
    registry.register(products)
    registry.register(templates)
    with pytest.raises(ValueError):
        registry.register(products_cache(store))
    await products.set("a", {"id": 1})
    await products.set("b", {"id": 2})
    await templates.set("a", {"id": 3})
    await store.set("instances:i-1", b"not a cache entry", ttl=60)

    stats = await registry.stats()
    assert stats["backend"] == "memory"
    assert stats["degraded"] is False
    assert {n: s["size"] for n, s in stats["caches"].items()} == {"products": 2, "templates": 1}

    with pytest.raises(KeyError):
        await registry.clear("instances")
    assert await registry.clear("products") == {"products": 2}
    assert await templates.get("a") == {"id": 3}
    assert await registry.clear(None) == {"products": 0, "templates": 1}
    assert await store.get("instances:i-1") == b"not a cache entry"
    assert await registry.health() == {"status": "up", "backend": "memory"}


def settings(**values: object) -> Settings:
    unset = {"redis_url": None, "upstash_redis_rest_url": None, "upstash_redis_rest_token": None}
    return Settings(_env_file=None, **{**unset, **values})  # type: ignore[arg-type]


async def test_backend_choice_follows_settings(clock: ManualClock) -> None:
    assert isinstance(build_cache_backend(settings(), clock), MemoryBackend)
    only_url = settings(upstash_redis_rest_url="https://example.upstash.io")
    assert isinstance(build_cache_backend(only_url, clock), MemoryBackend)

    redis = build_cache_backend(settings(redis_url="redis://127.0.0.1:1/0"), clock)
    assert isinstance(redis, FallbackBackend)
    assert redis.name == "redis"

    upstash = build_cache_backend(
        settings(upstash_redis_rest_url="https://example.upstash.io", upstash_redis_rest_token=SecretStr("t")),
        clock,
    )
    assert isinstance(upstash, FallbackBackend)
    assert upstash.name == "upstash"
    await redis.aclose()
    await upstash.aclose()
