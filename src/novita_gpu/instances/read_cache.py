"""The read cache of instance views and list pages, kept exact by the change feed.

Every committed write in this process pulses the feed (changes.py) with the instance it touched, and
the cache drops that instance's view and every cached list. On SQLite this process is the only writer,
so cached reads are exact. On PostgreSQL other replicas write too and are not pulsed here, so cached
reads also expire after READ_CACHE_SECONDS (default 1 s): a replica's reads lag another replica's
writes by at most that.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any, TypeVar

import orjson

from novita_gpu.clock import Clock
from novita_gpu.instances.changes import ChangeFeed

_T = TypeVar("_T")


class CachedView:
    """One instance's API view as its JSON body, and its owner.

    Only the bytes are kept: every cached view is read as a body (GET by id, list pages), and the view's
    dicts, ~10 objects per instance, would each be scanned by every full garbage collection. They are
    copied once to their own length: orjson's bytes keep the whole buffer it wrote into, several times
    the view (docs/performance.md, per-instance memory)."""

    __slots__ = ("body", "owner")

    def __init__(self, owner: str, view: dict[str, Any]) -> None:
        self.owner = sys.intern(owner)  # one string per API key, not one per cached view
        self.body = memoryview(orjson.dumps(view, option=orjson.OPT_NON_STR_KEYS)).tobytes()


class ListPage:
    """One page of GET /api/instances. Its JSON body is assembled from the views' own rendered bodies
    (shared with GET by id), not rendered again as a whole."""

    __slots__ = ("_body", "next_cursor", "total", "views")

    def __init__(self, views: list[CachedView], total: int, next_cursor: str | None) -> None:
        self.views = views
        self.total = total
        self.next_cursor = next_cursor
        self._body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            tail = orjson.dumps({"total": self.total, "nextCursor": self.next_cursor})
            self._body = b'{"instances":[' + b",".join(v.body for v in self.views) + b"]," + tail[1:]
        return self._body


class ReadCache:
    """Instance views by id and list pages, dropped on local writes and after `ttl` (None: never)."""

    def __init__(self, changes: ChangeFeed, clock: Clock, ttl: float | None, max_entries: int = 20_000) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max_entries
        self._views: dict[str, tuple[float, CachedView]] = {}
        self._lists: dict[Hashable, tuple[float, ListPage]] = {}
        changes.subscribe(self._invalidate)

    def _invalidate(self, instance_id: str | None) -> None:
        if instance_id is None:
            self._views.clear()
        else:
            self._views.pop(instance_id, None)
        self._lists.clear()

    def _fresh(self, entry: tuple[float, _T] | None) -> _T | None:
        if entry is None or self._clock.monotonic() >= entry[0]:
            return None
        return entry[1]

    def _expiry(self) -> float:
        return float("inf") if self._ttl is None else self._clock.monotonic() + self._ttl

    def view(self, instance_id: str) -> CachedView | None:
        return self._fresh(self._views.get(instance_id))

    def put_view(self, instance_id: str, value: CachedView) -> None:
        if len(self._views) >= self._max_entries:
            self._views.clear()
        self._views[instance_id] = (self._expiry(), value)

    def list(self, key: Hashable) -> ListPage | None:
        return self._fresh(self._lists.get(key))

    def put_list(self, key: Hashable, value: ListPage) -> None:
        if len(self._lists) >= self._max_entries:
            self._lists.clear()
        self._lists[key] = (self._expiry(), value)
