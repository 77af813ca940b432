"""The default store: an in-process dict with per-entry expiry and a least-recently-used bound."""

from __future__ import annotations

from collections import OrderedDict

from novita_gpu.kit.clock import Clock


class MemoryBackend:
    """TTL entries in insertion/access order; the least recently used entry goes first when full."""

    name = "memory"

    def __init__(self, clock: Clock, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self._clock.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._entries[key] = (self._clock.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._drop_expired()
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete_prefix(self, prefix: str) -> int:
        now = self._clock.monotonic()
        doomed = [key for key in self._entries if key.startswith(prefix)]
        live = 0
        for key in doomed:
            expires_at, _ = self._entries.pop(key)
            live += expires_at > now
        return live

    async def count_prefix(self, prefix: str) -> int:
        now = self._clock.monotonic()
        return sum(1 for key, (exp, _) in self._entries.items() if exp > now and key.startswith(prefix))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._entries.clear()

    def _drop_expired(self) -> None:
        now = self._clock.monotonic()
        for key in [key for key, (exp, _) in self._entries.items() if exp <= now]:
            del self._entries[key]
