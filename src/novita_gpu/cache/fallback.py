"""Keep serving when the shared cache is down: degrade to an in-process store, retry later.

Requests never fail because of the cache. The first failure flips `degraded`, records a secret-free
`last_error` and routes every operation to the fallback; after `retry_after` seconds the next
operation tries the primary again, and one success ends the degradation. A clear made while
degraded is replayed on the primary before it is used again, so cleared entries do not come back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from novita_gpu.cache.base import CacheBackend, CacheUnavailable
from novita_gpu.cache.memory import MemoryBackend
from novita_gpu.kit.clock import Clock

T = TypeVar("T")

log = structlog.get_logger(__name__)


class FallbackBackend:
    def __init__(self, primary: CacheBackend, fallback: MemoryBackend, clock: Clock, retry_after: float = 30) -> None:
        self.primary = primary
        self.fallback = fallback
        self.retry_after = retry_after
        self.degraded = False
        self.last_error: str | None = None
        self._clock = clock
        self._retry_at = 0.0
        self._pending_clears: set[str] = set()

    @property
    def name(self) -> str:
        return self.primary.name

    async def get(self, key: str) -> bytes | None:
        return await self._call(lambda b: b.get(key))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._call(lambda b: b.set(key, value, ttl))

    async def delete_prefix(self, prefix: str) -> int:
        # Entries written while degraded live in the fallback; the primary's go now or, while it is
        # unreachable, before it is used again.
        from_fallback = await self.fallback.delete_prefix(prefix)
        self._pending_clears.add(prefix)
        if not self._using_fallback():
            try:
                cleared = await self._replay_clears()
            except Exception as exc:
                self._failed(exc)
            else:
                self._recovered()
                return cleared.get(prefix, 0)
        return from_fallback

    async def count_prefix(self, prefix: str) -> int:
        return await self._call(lambda b: b.count_prefix(prefix))

    async def ping(self) -> None:
        """Probe the primary now (health checks); a failure degrades instead of raising."""
        try:
            await self.primary.ping()
        except Exception as exc:
            self._failed(exc)
        else:
            self._recovered()

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.fallback.aclose()

    def _using_fallback(self) -> bool:
        return self.degraded and self._clock.monotonic() < self._retry_at

    async def _call(self, operation: Callable[[CacheBackend], Awaitable[T]]) -> T:
        if not self._using_fallback():
            try:
                await self._replay_clears()
                result = await operation(self.primary)
            except Exception as exc:
                self._failed(exc)
            else:
                self._recovered()
                return result
        return await operation(self.fallback)

    async def _replay_clears(self) -> dict[str, int]:
        cleared: dict[str, int] = {}
        while self._pending_clears:
            prefix = next(iter(self._pending_clears))
            cleared[prefix] = await self.primary.delete_prefix(prefix)
            self._pending_clears.discard(prefix)
        return cleared

    def _failed(self, exc: Exception) -> None:
        # CacheUnavailable messages are already secret-free; anything else is reported by type only.
        error = str(exc) if isinstance(exc, CacheUnavailable) else f"{type(exc).__name__} in cache backend"
        if not self.degraded:
            log.warning("cache_degraded", backend=self.name, error=error, retry_after=self.retry_after)
        self.degraded = True
        self.last_error = error
        self._retry_at = self._clock.monotonic() + self.retry_after

    def _recovered(self) -> None:
        if self.degraded:
            log.info("cache_recovered", backend=self.name)
            self.degraded = False
