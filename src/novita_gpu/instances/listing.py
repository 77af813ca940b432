"""Novita's instance list as the reconciler uses it, and its sharing between replicas through the store.

Every replica's reconciler needs Novita's list on each busy tick and on each full pass, and listing 10,000
instances is 100 calls. With several replicas on PostgreSQL each listing on its own, the calls per tick
grew with the replicas. So the list is shared (`SharedListing`): a replica that needs a listing newer than
its previous tick uses the one in the store if one began after that; else it takes the right to list (a
lease on the one `upstream_listing` row, held while it lists, at most LEASE_SECONDS), lists Novita and
stores what it saw; and if another replica is listing right now, it goes on with the latest there is.
Cluster-wide that is one listing per tick of the busiest replica, whatever the number of replicas.

A listing older than a row's last write is never used to judge that row (`Listing.knows`), so a replica
that goes on with an older listing only sees changes a little later; it never moves a row back.

The stored listing holds what the reconciler compares, per instance: id, name, status, error, reclaimed
(~40 bytes zlib-compressed; 10,000 instances: ~400 KB stored, ~15 ms to read back). On SQLite (one
process) nothing is stored: the reconciler lists Novita itself.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import structlog
from sqlalchemy import bindparam, or_, select, update

from novita_gpu.instances.lifecycle import is_leaving
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database, table_of
from novita_gpu.kit.tables import UpstreamListing
from novita_gpu.novita import Listed

log = structlog.get_logger(__name__)


@dataclass
class Listing:
    """Novita's instances as one listing saw them, and when it began: a row written after that may know
    more than this listing shows of it (a newer status read by id), so it is not judged by it."""

    taken_at: datetime
    by_id: dict[str, Listed] = field(default_factory=dict)
    # The instance a record without an id may adopt: one not on its way out (the first seen if several).
    by_name: dict[str, Listed] = field(default_factory=dict)

    def add(self, upstream: Listed) -> None:
        self.by_id[upstream.id] = upstream
        if upstream.name and not is_leaving(upstream.status):
            self.by_name.setdefault(upstream.name, upstream)

    def next_reclaim(self) -> int | None:
        """When the earliest reclaim Novita has given notice of is due (unix seconds), None without one."""
        return min((u.spot_reclaim_time for u in self.by_id.values() if u.spot_notified), default=None)

    def knows(self, updated_at: datetime) -> bool:
        """Whether this listing began after a row's last write, so it is at least as new as the row."""
        return updated_at <= self.taken_at

    def dump(self) -> bytes:
        rows = [
            [u.id, u.name, u.status, u.error, u.spot_reclaimed, u.spot_status, u.spot_reclaim_time]
            for u in self.by_id.values()
        ]
        return zlib.compress(orjson.dumps(rows), 1)

    @classmethod
    def load(cls, taken_at: datetime, body: bytes) -> Listing:
        listing = cls(taken_at)
        for id_, name, status, error, reclaimed, *spot in orjson.loads(zlib.decompress(body)):
            # Spot status and reclaim time (the notice of a reclaim): absent from listings stored before.
            spot_status, reclaim_time = [*spot, "", 0][:2]
            listing.add(
                Listed(id_, name, sys.intern(status), error, bool(reclaimed), sys.intern(spot_status), reclaim_time)
            )
        return listing


# Before any listing was stored: a listing that knows no row (each waits for a real one).
_NEVER = datetime.min.replace(tzinfo=UTC)

_ROW = table_of(UpstreamListing)
_STATE = select(_ROW.c.taken_at, _ROW.c.listed_at, _ROW.c.lister, _ROW.c.lease_expires_at).where(_ROW.c.id == 1)
_BODY = select(_ROW.c.taken_at, _ROW.c.body).where(_ROW.c.id == 1)
_TAKE = (
    update(_ROW)
    .where(
        _ROW.c.id == 1,
        or_(
            _ROW.c.lease_expires_at.is_(None),
            _ROW.c.lease_expires_at < bindparam("now"),
            _ROW.c.lister == bindparam("me"),
        ),
        or_(_ROW.c.listed_at.is_(None), _ROW.c.listed_at <= bindparam("gap_start")),
    )
    .values(lister=bindparam("me"), lease_expires_at=bindparam("until"))
)
_STORE = (
    update(_ROW)
    .where(_ROW.c.id == 1, _ROW.c.lister == bindparam("me"))
    .values(
        taken_at=bindparam("taken_at"),
        listed_at=bindparam("listed_at"),
        body=bindparam("body"),
        lister=None,
        lease_expires_at=None,
    )
)
_GIVE_BACK = (
    update(_ROW).where(_ROW.c.id == 1, _ROW.c.lister == bindparam("me")).values(lister=None, lease_expires_at=None)
)


class SharedListing:
    """The listing of Novita's instances that replicas share through the store (see the module's doc)."""

    def __init__(self, db: Database, clock: Clock, lister: str, *, lease_seconds: float, gap_seconds: float) -> None:
        self.db = db
        self.clock = clock
        self.lister = lister
        self.lease_seconds = lease_seconds
        self.gap_seconds = gap_seconds  # between the end of one listing and the start of the next
        self._latest: Listing | None = None  # the stored listing last read or written here

    async def get(self, newer_than: datetime, list_novita: Callable[[], Awaitable[Listing]]) -> tuple[Listing, bool]:
        """A listing begun after `newer_than` when there is or can be one, and whether it was listed here."""
        [state] = await self.db.fetch(_STATE)
        if state.taken_at is not None and state.taken_at > newer_than:
            return await self._stored(state.taken_at), False
        now = self.clock.now()
        until = now + timedelta(seconds=self.lease_seconds)
        gap_start = now - timedelta(seconds=self.gap_seconds)
        async with self.db.write() as session:
            taken = await session.execute(
                _TAKE, {"now": now, "me": self.lister, "until": until, "gap_start": gap_start}
            )
        if not getattr(taken, "rowcount", 0):  # another replica lists now, or has just listed: the latest
            return (await self._stored(state.taken_at) if state.taken_at is not None else Listing(_NEVER)), False
        try:
            listing = await list_novita()
        except BaseException:
            async with self.db.write() as session:
                await session.execute(_GIVE_BACK, {"me": self.lister})
            raise
        params = {
            "me": self.lister,
            "taken_at": listing.taken_at,
            "listed_at": self.clock.now(),
            "body": listing.dump(),
        }
        async with self.db.write() as session:
            await session.execute(_STORE, params)
        self._latest = listing
        return listing, True

    async def _stored(self, taken_at: datetime) -> Listing:
        if self._latest is not None and self._latest.taken_at == taken_at:
            return self._latest
        [row] = await self.db.fetch(_BODY)
        if row.body is None or row.taken_at is None:
            return Listing(_NEVER)
        self._latest = Listing.load(row.taken_at, row.body)
        return self._latest
