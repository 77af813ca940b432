"""What one cached view costs: its JSON body packed against a typical view's, not the body itself, nor the
buffer orjson wrote it into; and how many list pages the cache keeps."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson

from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.read_cache import CachedView, ListPage, ReadCache
from novita_gpu.kit.clock import ManualClock


def _view(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "instanceId": f"inst_{n:020d}",
        "name": f"scale-{n}",
        "status": "ready",
        "statusMessage": "The instance is ready: every port answers.",
        "upstreamStatus": "running",
        "novitaInstanceId": f"{n:016x}",
        "productName": "RTX 4090 24GB",
        "templateId": "pytorch-jupyter",
        "networkStorages": [],
        "gpuNum": 1,
        "region": "US-01",
        "pricePerHour": 0.35,
        "connectionDetails": {"ports": [{"port": 8888, "type": "http", "endpoint": f"https://{n}-8888.example"}]},
        "autoStop": {"idleMinutes": 60, "signal": "lastUsed", "action": "stop", "lastUsedAt": None},
        "maxRuntimeMinutes": 0,
        "cost": {"accruedUsd": 0.1, "billedSeconds": 1.0, "accruedAt": "2026-11-30T12:00:00Z", "billingSince": None},
        "envKeys": ["JUPYTER_TOKEN"],
        "labels": {"team": "a"},
        "createdAt": "2026-11-30T12:00:00.123456Z",
        "readyAt": "2026-11-30T12:01:00.123456Z",
        "updatedAt": "2026-11-30T12:01:00.123456Z",
        **changes,
    }


def test_a_cached_view_holds_a_fraction_of_its_body() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        views = [CachedView("".join(["def", "ault"]), _view(n)) for n in range(1, 201)]  # a new owner string each
        per_view = (tracemalloc.get_traced_memory()[0] - before) / len(views)
    finally:
        tracemalloc.stop()
    body = views[6].body
    assert body == orjson.dumps(_view(7))  # unpacked, byte for byte
    # ~900 B of JSON; its slot object and packed bytes take a fraction (unpacked: the body and ~50 B more).
    assert per_view < len(body) / 3, (per_view, len(body))
    assert views[0].owner is views[1].owner  # one owner string for every view of an API key


def test_a_cached_view_takes_a_new_cost_in_place_and_refuses_when_the_cost_is_not_found_once() -> None:
    old = {"accruedUsd": 0.1, "billedSeconds": 1.0, "accruedAt": "2026-11-30T12:00:00Z", "billingSince": None}
    new = {"accruedUsd": 0.25, "billedSeconds": 61.5, "accruedAt": "2026-11-30T12:01:00Z", "billingSince": None}
    cached = CachedView("default", _view(1, cost=old, labels={"cost": "{}"}))
    assert cached.move_cost(new)
    assert cached.body == orjson.dumps(_view(1, cost=new, labels={"cost": "{}"}))

    twice = CachedView("default", _view(2, cost=old, labels={"nested": {"cost": old}}))  # found twice: left alone
    body = twice.body
    assert not twice.move_cost(new) and twice.body == body


def test_the_read_cache_keeps_a_bounded_number_of_list_pages() -> None:
    cache = ReadCache(ChangeFeed(), ManualClock(), ttl=None, max_lists=4)
    page = ListPage([CachedView("default", _view(1))] * 500, 500, None)
    for cursor in range(10):  # a client walking pages: each one up to 500 views' JSON
        cache.put_list(("default", 500, cursor), page)
    assert 1 <= sum(cache.list(("default", 500, cursor)) is not None for cursor in range(10)) <= 4
