"""The read cache of instance views and list pages, kept exact by the change feed.

Every committed write in this process pulses the feed (changes.py) with the instance it touched, and
the cache drops that instance's view and every cached list. On SQLite this process is the only writer,
so cached reads are exact. On PostgreSQL other replicas write too and are not pulsed here, so cached
reads also expire after READ_CACHE_SECONDS (default 1 s): a replica's reads lag another replica's
writes by at most that. The minute's cost checkpoint moves the cost of each cached view it wrote in place
(`move_costs`) rather than dropping every view.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import orjson

from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.rendering import typical_view_json
from novita_gpu.kit.clock import Clock

_K = TypeVar("_K", bound=Hashable)
_T = TypeVar("_T")
_COST = b'"cost":{"accruedUsd":'


# Cached views are kept compressed against a preset dictionary, a typical view: views share nearly all
# their keys and many of their values, so a 1.0-1.6 KB view packs to ~80-200 B in ~7 µs and unpacks in
# ~2-3 µs (docs/performance.md). Raw deflate, 2 KB window: a view's length.
_DICTIONARY = typical_view_json()


def _pack(body: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, -11, 8, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY)
    return packer.compress(body) + packer.flush()


def _unpack(packed: bytes) -> bytes:
    return zlib.decompressobj(-11, _DICTIONARY).decompress(packed)


class CachedView:
    """One instance's API view as its JSON body, and its owner.

    Only the bytes are kept, packed (`_pack`): every cached view is read as a body (GET by id, list
    pages), and the view's dicts, ~10 objects per instance, would each be scanned by every full garbage
    collection; unpacked, 10,000 views held ~16 MB, a tenth of the process."""

    __slots__ = ("_packed", "owner")

    def __init__(self, owner: str, view: dict[str, Any]) -> None:
        self.owner = sys.intern(owner)  # one string per API key, not one per cached view
        self._packed = _pack(orjson.dumps(view, option=orjson.OPT_NON_STR_KEYS))

    @property
    def body(self) -> bytes:
        return _unpack(self._packed)

    def move_cost(self, cost: dict[str, Any]) -> bool:
        """Put `cost` in place of the view's `cost` object; False (nothing changed) unless that object is
        found exactly once. Its members are numbers, timestamps and nulls, so it ends at the first `}`."""
        body = self.body
        start = body.find(_COST)
        if start < 0 or body.find(_COST, start + 1) >= 0:
            return False
        start += len(b'"cost":')
        end = body.index(b"}", start) + 1
        self._packed = _pack(body[:start] + orjson.dumps(cost) + body[end:])
        return True


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


def list_key(
    owner: str,
    *,
    statuses: list[str] | tuple[str, ...] = (),
    name: str | None = None,
    limit: int,
    cursor: str | None = None,
    labels: tuple[tuple[str, str], ...] = (),
) -> Hashable:
    """The cache key of one list page: the route's and the cached-reads shortcut's (cached_reads.py)."""
    return ("list", owner, tuple(statuses), name, limit, cursor, labels)


class ReadCache:
    """Instance views by id and list pages, dropped on local writes and after `ttl` (None: never)."""

    def __init__(
        self, changes: ChangeFeed, clock: Clock, ttl: float | None, max_views: int = 20_000, max_lists: int = 64
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        # Lists are few (a dashboard's pages, each filter's first page), but one holds up to 500 views' JSON
        # body: uncapped, a client walking every page with every cursor kept ~800 KB per page.
        self._max_views = max_views
        self._max_lists = max_lists
        self._views: dict[str, tuple[float, CachedView]] = {}
        self._lists: dict[Hashable, tuple[float, ListPage]] = {}
        changes.subscribe(self._invalidate)

    def _invalidate(self, instance_id: str | None) -> None:
        if instance_id is None:
            self._views.clear()
        else:
            self._views.pop(instance_id, None)
        self._lists.clear()

    def move_costs(self, costs: Mapping[str, dict[str, Any]]) -> None:
        """The cost checkpoint moved these instances' accrued cost (`costs`: their new `cost` objects).
        Their cached views get it in place, and keep their expiry: dropping every view each minute had
        GET by id render 10,000 views again after each checkpoint (docs/performance.md). Cached lists are
        dropped; they are assembled from the views."""
        for instance_id, cost in costs.items():
            entry = self._views.get(instance_id)
            if entry is not None and not entry[1].move_cost(cost):
                del self._views[instance_id]
        if costs:
            self._lists.clear()

    def _fresh(self, entry: tuple[float, _T] | None) -> _T | None:
        if entry is None or self._clock.monotonic() >= entry[0]:
            return None
        return entry[1]

    def _put(self, table: dict[_K, tuple[float, _T]], most: int, key: _K, value: _T) -> None:
        """Keep `value` until the ttl passes; a table at `most` entries is emptied first."""
        if len(table) >= most:
            table.clear()
        table[key] = (float("inf") if self._ttl is None else self._clock.monotonic() + self._ttl, value)

    def view(self, instance_id: str) -> CachedView | None:
        return self._fresh(self._views.get(instance_id))

    def put_view(self, instance_id: str, value: CachedView) -> None:
        self._put(self._views, self._max_views, instance_id, value)

    def list(self, key: Hashable) -> ListPage | None:
        return self._fresh(self._lists.get(key))

    def put_list(self, key: Hashable, value: ListPage) -> None:
        self._put(self._lists, self._max_lists, key, value)
