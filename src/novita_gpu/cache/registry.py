"""Named caches over one backend, and the registry the app and the cache routes work with.

Only catalog look-ups (products, templates, clusters) are cached; instance records live in the
database and never pass through here. A cache name is a fixed identifier chosen in code, so clearing
"a cache" can only ever touch that cache's namespace.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog

from novita_gpu.cache.base import CacheBackend, CacheUnavailable
from novita_gpu.cache.fallback import FallbackBackend
from novita_gpu.cache.memory import MemoryBackend
from novita_gpu.cache.redis import RedisBackend, UpstashBackend
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.settings import Settings

T = TypeVar("T")

LookupHook = Callable[[str, bool], None]

# No ':' (the separator) and no glob characters: one name's namespace never contains another's.
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")

log = structlog.get_logger(__name__)


MAX_DECODED = 1024


class NamedCache(Generic[T]):
    """Typed values under `<name>:<key>` with one TTL, in-process hit/miss counts and single-flight loads."""

    def __init__(
        self,
        name: str,
        backend: CacheBackend,
        ttl: float,
        dump: Callable[[T], bytes],
        load: Callable[[bytes], T],
        *,
        on_lookup: LookupHook | None = None,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid cache name {name!r}: use lowercase letters, digits, '-' or '_'")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.name = name
        self.ttl = ttl
        self.on_lookup = on_lookup
        self.hits = 0
        self.misses = 0
        self._backend = backend
        self._dump = dump
        self._load = load
        self._inflight: dict[str, asyncio.Task[T]] = {}
        # The last decoded value per key with the bytes it came from: an unchanged entry is not
        # parsed again (validating a catalog list on every create shows; docs/performance.md).
        self._decoded: dict[str, tuple[bytes, T]] = {}

    async def get(self, key: str) -> T | None:
        raw = await self._backend.get(self._key(key))
        value = self._decode(key, raw) if raw is not None else None
        self._record(value is not None)
        return value

    async def set(self, key: str, value: T) -> None:
        await self._backend.set(self._key(key), self._dump(value), self.ttl)

    async def get_or_load(self, key: str, loader: Callable[[], Awaitable[T]]) -> T:
        """The cached value, or the loader's (stored for next time); concurrent misses share one load."""
        pending = self._inflight.get(key)
        if pending is None:
            cached = await self.get(key)
            if cached is not None:
                return cached
            pending = self._inflight.get(key)  # another caller may have started while we looked
        else:
            self._record(False)
        if pending is None:
            pending = asyncio.create_task(self._load_and_store(key, loader))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(pending)

    async def clear(self) -> int:
        return await self._backend.delete_prefix(self._key(""))

    async def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hitRatio": round(self.hits / lookups, 4) if lookups else 0.0,
            "size": await self._backend.count_prefix(self._key("")),
            "ttl": self.ttl,
        }

    def _key(self, key: str) -> str:
        return f"{self.name}:{key}"

    def _decode(self, key: str, raw: bytes) -> T | None:
        memo = self._decoded.get(key)
        if memo is not None and memo[0] == raw:
            return memo[1]
        try:
            value = self._load(raw)
        except Exception as exc:  # an entry written by another version: treat it as a miss
            log.warning("cache_entry_unreadable", cache=self.name, key=key, error_type=type(exc).__name__)
            return None
        if len(self._decoded) >= MAX_DECODED:
            self._decoded.clear()
        self._decoded[key] = (raw, value)
        return value

    def _record(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if self.on_lookup is not None:
            self.on_lookup(self.name, hit)

    async def _load_and_store(self, key: str, loader: Callable[[], Awaitable[T]]) -> T:
        value = await loader()
        await self.set(key, value)
        return value


class CacheRegistry:
    """Every named cache of the process, over one backend."""

    def __init__(self, backend: CacheBackend) -> None:
        self.backend = backend
        self._caches: dict[str, NamedCache[Any]] = {}

    def register(self, cache: NamedCache[Any]) -> None:
        if cache.name in self._caches:
            raise ValueError(f"cache {cache.name!r} is already registered")
        self._caches[cache.name] = cache

    def get(self, name: str) -> NamedCache[Any]:
        return self._caches[name]

    def names(self) -> list[str]:
        return sorted(self._caches)

    @property
    def degraded(self) -> bool:
        return isinstance(self.backend, FallbackBackend) and self.backend.degraded

    async def stats(self) -> dict[str, Any]:
        caches = {name: await self._caches[name].stats() for name in self.names()}
        return {"backend": self.backend.name, "degraded": self.degraded, "caches": caches}

    async def clear(self, name: str | None = None) -> dict[str, int]:
        """Clear one named cache (unknown name: KeyError) or, with None, every named cache."""
        names = self.names() if name is None else [self.get(name).name]
        return {each: await self._caches[each].clear() for each in names}

    async def health(self) -> dict[str, Any]:
        try:
            await self.backend.ping()
        except Exception as exc:
            error = str(exc) if isinstance(exc, CacheUnavailable) else type(exc).__name__
            return {"status": "degraded", "backend": self.backend.name, "error": error}
        if isinstance(self.backend, FallbackBackend) and self.backend.degraded:
            return {"status": "degraded", "backend": self.backend.name, "error": self.backend.last_error}
        return {"status": "up", "backend": self.backend.name}

    async def aclose(self) -> None:
        await self.backend.aclose()


def build_cache_backend(settings: Settings, clock: Clock) -> CacheBackend:
    """Memory by default; REDIS_URL, else UPSTASH_REDIS_REST_URL + _TOKEN, behind a memory fallback."""
    primary: CacheBackend
    if settings.redis_url:
        primary = RedisBackend(settings.redis_url)
    elif settings.upstash_redis_rest_url and settings.upstash_redis_rest_token:
        primary = UpstashBackend(settings.upstash_redis_rest_url, settings.upstash_redis_rest_token)
    else:
        return MemoryBackend(clock)
    return FallbackBackend(primary, MemoryBackend(clock), clock)
