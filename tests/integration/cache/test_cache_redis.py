"""Shared caches against the real Redis: over its protocol, over the Upstash REST protocol (a tiny
Upstash server relaying to that Redis), and degradation to memory when the store is unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import orjson
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from novita_gpu.cache import (
    CacheBackend,
    CacheRegistry,
    CacheUnavailable,
    FallbackBackend,
    MemoryBackend,
    NamedCache,
    RedisBackend,
    UpstashBackend,
)
from novita_gpu.cache.base import glob_escape
from novita_gpu.kit.clock import ManualClock
from novita_gpu.kit.serving import free_port
from tests.fixtures.services import require_redis
from tests.fixtures.upstash import running_upstash

pytestmark = pytest.mark.redis

TOKEN = "upstash-test-token-5f1d"


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client on the same database, to look at what the backends really wrote."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def namespace(raw: aioredis.Redis) -> AsyncIterator[str]:
    """A per-test key namespace; everything under it is removed afterwards (and nothing else)."""
    ns = f"test-cache-{uuid.uuid4().hex}"
    yield ns
    async for key in raw.scan_iter(match=glob_escape(ns) + "*"):
        await raw.delete(key)


@pytest.fixture(scope="module")
def upstash_url() -> Iterator[str]:
    with running_upstash(require_redis(), TOKEN) as server:
        yield server.url


def caches(backend: CacheBackend) -> CacheRegistry:
    registry = CacheRegistry(backend)
    for name in ("products", "templates"):
        registry.register(NamedCache(name, backend, ttl=60, dump=orjson.dumps, load=orjson.loads))
    return registry


async def assert_namespaced_and_scoped(registry: CacheRegistry, raw: aioredis.Redis, prefix: str) -> None:
    products, templates = registry.get("products"), registry.get("templates")
    await products.set("rtx4090", {"id": "p1"})
    await products.set("a100", {"id": "p2"})
    await templates.set("pytorch", {"id": "t1"})
    # Keys a glob-honouring clear would hit: same shape with the prefix's glob characters "expanded",
    # and records outside the cache prefix altogether.
    foreign = [prefix.replace("*", "X").replace("?", "Y").replace("[ab]", "a") + "products:k", "products:k"]
    for key in foreign:
        await raw.set(key, b"foreign", ex=60)

    assert await raw.get(prefix + "products:rtx4090") == b'{"id":"p1"}'
    assert await raw.pttl(prefix + "products:rtx4090") > 50_000
    assert (await registry.stats())["caches"]["products"]["size"] == 2

    assert await registry.clear("products") == {"products": 2}

    assert await products.get("rtx4090") is None
    assert await templates.get("pytorch") == {"id": "t1"}
    assert [await raw.get(key) for key in foreign] == [b"foreign", b"foreign"]
    await raw.delete(*foreign)


async def test_redis_keys_carry_the_prefix_and_clear_touches_one_cache(
    redis_url: str, raw: aioredis.Redis, namespace: str
) -> None:
    prefix = f"{namespace}-*?[ab]:"
    backend = RedisBackend(redis_url, prefix=prefix)
    try:
        await assert_namespaced_and_scoped(caches(backend), raw, prefix)
    finally:
        await backend.aclose()


async def test_upstash_rest_keys_carry_the_prefix_and_clear_touches_one_cache(
    upstash_url: str, raw: aioredis.Redis, namespace: str
) -> None:
    prefix = f"{namespace}-*?[ab]:"
    backend = UpstashBackend(upstash_url, SecretStr(TOKEN), prefix=prefix)
    try:
        await backend.ping()
        await assert_namespaced_and_scoped(caches(backend), raw, prefix)
        assert await backend.count_prefix("") == 1
    finally:
        await backend.aclose()


async def test_upstash_wrong_token_fails_without_revealing_it(upstash_url: str, namespace: str) -> None:
    wrong = "wrong-token-0c9e"
    backend = UpstashBackend(upstash_url, SecretStr(wrong), prefix=namespace + ":")
    try:
        with pytest.raises(CacheUnavailable) as failure:
            await backend.get("products:x")
        assert "401" in str(failure.value)
        assert wrong not in str(failure.value)
        assert wrong not in repr(backend)
    finally:
        await backend.aclose()


@contextlib.asynccontextmanager
async def tcp_relay(port: int, target_port: int) -> AsyncIterator[None]:
    """Forward a loopback port to Redis while open: the "Redis" at `port` is up, then down again."""
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", target_port)
        writers.extend((client_w, redis_w))
        await asyncio.gather(pipe(client_r, redis_w), pipe(redis_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_unreachable_redis_degrades_to_memory_then_recovers(
    redis_url: str, raw: aioredis.Redis, namespace: str
) -> None:
    clock = ManualClock()
    port, redis_port = free_port(), urlsplit(redis_url).port or 6379
    primary = RedisBackend(f"redis://127.0.0.1:{port}/15", prefix=namespace + ":")
    backend = FallbackBackend(primary, MemoryBackend(clock), clock, retry_after=30)
    registry = caches(backend)
    products = registry.get("products")
    stored = f"{namespace}:products:a100"
    calls = 0

    async def loader() -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {"id": "p1"}

    try:
        # Nothing listens: requests are served, from memory.
        assert await products.get_or_load("rtx4090", loader) == {"id": "p1"}
        assert await products.get_or_load("rtx4090", loader) == {"id": "p1"}
        assert calls == 1
        stats = await registry.stats()
        assert (stats["backend"], stats["degraded"]) == ("redis", True)
        assert "ConnectionError" in (backend.last_error or "")
        assert (await registry.health())["status"] == "degraded"

        async with tcp_relay(port, redis_port):
            await products.set("a100", {"id": "p2"})
            assert backend.degraded  # within retry_after the primary is not tried
            assert await raw.get(stored) is None

            clock.advance(30)
            await products.set("a100", {"id": "p2"})
            assert not backend.degraded
            assert await raw.get(stored) == b'{"id":"p2"}'
            assert await registry.health() == {"status": "up", "backend": "redis"}

        # Down again: a clear made now only reaches memory, and is replayed once Redis is back.
        assert await products.get("a100") == {"id": "p2"}  # the copy memory kept while degraded
        assert backend.degraded
        assert await registry.clear("products") == {"products": 2}
        assert await raw.get(stored) == b'{"id":"p2"}'

        async with tcp_relay(port, redis_port):
            # A health check probes the primary at once, without waiting for retry_after.
            assert await registry.health() == {"status": "up", "backend": "redis"}
            assert not backend.degraded
            assert await products.get("a100") is None
            assert await raw.get(stored) is None
    finally:
        await backend.aclose()


async def test_a_refused_password_degrades_without_revealing_it(redis_url: str) -> None:
    clock = ManualClock()
    url = redis_url.replace("redis://", "redis://someone:hunter2-secret@")
    backend = FallbackBackend(RedisBackend(url, prefix="unused:"), MemoryBackend(clock), clock)
    try:
        health = await CacheRegistry(backend).health()
        assert health["status"] == "degraded"
        assert "AuthenticationError" in health["error"]
        assert "hunter2" not in str(health)
        assert "hunter2" not in repr(backend.primary)
    finally:
        await backend.aclose()


async def test_a_redis_that_never_answers_times_out_and_degrades() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = ManualClock()
    backend = FallbackBackend(RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=0.2), MemoryBackend(clock), clock)
    cache: NamedCache[object] = NamedCache("products", backend, ttl=60, dump=orjson.dumps, load=orjson.loads)
    try:
        async with asyncio.timeout(3):
            await cache.set("k", {"id": 1})
            assert await cache.get("k") == {"id": 1}
        assert backend.degraded
        assert "Timeout" in (backend.last_error or "")
    finally:
        await backend.aclose()
        server.close()


async def test_upstash_down_then_up_on_the_same_port(raw: aioredis.Redis, namespace: str) -> None:
    clock = ManualClock()
    port = free_port()
    primary = UpstashBackend(f"http://127.0.0.1:{port}", SecretStr(TOKEN), prefix=namespace + ":")
    backend = FallbackBackend(primary, MemoryBackend(clock), clock, retry_after=5)
    cache: NamedCache[object] = NamedCache("templates", backend, ttl=60, dump=orjson.dumps, load=orjson.loads)

    await cache.set("t1", {"id": "t1"})
    assert await cache.get("t1") == {"id": "t1"}
    assert backend.degraded
    assert TOKEN not in (backend.last_error or "")

    try:
        with running_upstash(require_redis(), TOKEN, port=port):
            clock.advance(5)
            await cache.set("t1", {"id": "t1"})
            assert not backend.degraded
            assert await raw.get(f"{namespace}:templates:t1") == b'{"id":"t1"}'
    finally:
        await backend.aclose()
