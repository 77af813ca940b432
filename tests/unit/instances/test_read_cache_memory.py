"""What one cached view costs: its JSON body at its own length, not the buffer orjson wrote it into."""

from __future__ import annotations

import tracemalloc

from novita_gpu.instances.read_cache import CachedView


def test_a_cached_view_holds_its_body_at_its_own_length() -> None:
    view = {"instanceId": "inst_0123456789abcdef0123", "statusMessage": "x" * 1800, "labels": {"team": "a"}}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        views = [CachedView("".join(["def", "ault"]), view) for _ in range(200)]  # a new owner string each
        per_view = (tracemalloc.get_traced_memory()[0] - before) / len(views)
    finally:
        tracemalloc.stop()
    body = views[0].body
    assert body.startswith(b'{"instanceId":"inst_0123456789abcdef0123"')
    # ~1.9 KB of JSON and the object around it; orjson's own bytes took 16 KB for it.
    assert per_view < len(body) + 400, per_view
    assert views[0].owner is views[1].owner  # one owner string for every view of an API key
