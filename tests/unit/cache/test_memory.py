"""The in-process store: entries expire on the injected clock and the store stays within its bound."""

from __future__ import annotations

import pytest

from novita_gpu.cache import MemoryBackend
from novita_gpu.kit.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_entry_lives_for_its_ttl_then_expires(clock: ManualClock) -> None:
    store = MemoryBackend(clock)
    await store.set("products:a", b"1", ttl=10)

    clock.advance(9.9)
    assert await store.get("products:a") == b"1"
    clock.advance(0.1)
    assert await store.get("products:a") is None
    assert await store.count_prefix("products:") == 0


async def test_least_recently_used_entry_is_evicted_at_the_bound(clock: ManualClock) -> None:
    store = MemoryBackend(clock, max_entries=3)
    for key in ("a", "b", "c"):
        await store.set(key, key.encode(), ttl=60)
    assert await store.get("a") == b"a"  # "b" is now the least recently used

    await store.set("d", b"d", ttl=60)

    assert await store.get("b") is None
    assert [await store.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]
    assert await store.count_prefix("") == 3


async def test_expired_entries_are_dropped_before_live_ones_are_evicted(clock: ManualClock) -> None:
    store = MemoryBackend(clock, max_entries=2)
    await store.set("old", b"x", ttl=1)
    await store.set("live", b"y", ttl=60)
    clock.advance(2)

    await store.set("new", b"z", ttl=60)

    assert await store.get("live") == b"y"
    assert await store.get("new") == b"z"


async def test_prefix_operations_touch_only_that_literal_prefix(clock: ManualClock) -> None:
    store = MemoryBackend(clock)
    await store.set("products:1", b"p", ttl=60)
    await store.set("products:2", b"p", ttl=60)
    await store.set("templates:1", b"t", ttl=60)
    await store.set("products-eu:1", b"x", ttl=60)

    assert await store.count_prefix("products:") == 2
    assert await store.delete_prefix("products:") == 2
    assert await store.get("templates:1") == b"t"
    assert await store.get("products-eu:1") == b"x"
    assert await store.delete_prefix("*") == 0
    assert await store.count_prefix("") == 2
