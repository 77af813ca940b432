"""Which rows a tick takes: the rows watched, the few that need attention, in which order, and the full pass.

A tick reads a few columns of every watched row (`read_candidates`), a page at a time, and leases only the
rows that need attention (`needs_attention`): an action to carry out, a deadline passed, or Novita showing
them otherwise than last seen. A full pass (`FullPass`), every RECONCILE_SLOW_SECONDS, looks at every
watched row whatever it shows, SWEEP_PER_TICK of them a tick besides those that need attention.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, or_, select

from novita_gpu.instances.lifecycle import CHANGING, Action, Status
from novita_gpu.instances.listing import Listing
from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import Instance

# Rows the reconciler looks after: not terminated, and known upstream or with an action pending.
WATCHED = and_(
    Instance.status != Status.TERMINATED,
    or_(
        Instance.novita_instance_id.is_not(None),
        Instance.pending_action.is_not(None),
        Instance.create_attempted_at.is_not(None),
    ),
)
# A create sent and never answered (its connection dropped, its call timed out), never sent again: only a
# listing can show its instance. It keeps no worker on fast ticks, each of which lists Novita for the
# STARTUP_TIMEOUT_SECONDS it may wait; the slow ticks look for it. (A create whose sender died before any
# answer has a time to be sent again, `next_action_at`: it is work until then.)
IN_DOUBT = and_(
    Instance.pending_action == Action.CREATE,
    Instance.novita_instance_id.is_(None),
    Instance.create_attempted_at.is_not(None),
    Instance.next_action_at.is_(None),
)
# The columns of a watched row that say whether it needs attention, a page at a time by id.
_CANDIDATES = (
    select(
        Instance.id,
        Instance.status,
        Instance.novita_instance_id,
        Instance.upstream_status,
        Instance.pending_action,
        Instance.next_action_at,
        Instance.create_attempted_at,
        Instance.phase_deadline_at,
        Instance.updated_at,
    )
    .where(WATCHED, Instance.id > bindparam("after"))
    .order_by(Instance.id)
    .limit(bindparam("limit"))
)
# Rows read per query of the candidates' columns: SQLite runs inline, and one read of every row held the
# loop for all of it; between two reads it serves requests (docs/performance.md).
CANDIDATES_PAGE = 2_000
# Whether anything is left to do: a row changing, or with an action owed (a create in doubt is not).
_WORK_LEFT = (
    select(Instance.id)
    .where(or_(Instance.status.in_(list(CHANGING)), Instance.pending_action.is_not(None)), ~IN_DOUBT)
    .limit(1)
)
# Rows of a full pass looked at per tick, besides those that need attention. A pass over every steady row
# in one tick made short-lived objects for every row at once, whose scattered survivors kept the
# allocator's arenas from ever being given back (docs/performance.md). Up to this many rows, a pass is
# one tick as before.
SWEEP_PER_TICK = 500


async def read_candidates(db: Database) -> list[Row[Any]]:
    """A light read of every watched row: the few columns that say whether it needs attention.

    Only those rows are then leased and loaded, so a tick over many steady instances costs a column scan
    rather than a lease and an ORM load per row, which held the event loop on every fast tick. Rows leased
    by another replica are read too (their claim then fails): they tell which upstream instances belong to
    a record. Read a page at a time (by id), the loop turning between pages."""
    rows: list[Row[Any]] = []
    after = ""
    while True:
        page = list(await db.fetch(_CANDIDATES, {"after": after, "limit": CANDIDATES_PAGE}))
        rows.extend(page)
        if len(page) < CANDIDATES_PAGE:
            return rows
        after = page[-1].id
        await asyncio.sleep(0)


async def work_left(db: Database, owner: str | None = None) -> bool:
    """Whether some row (of `owner`, when given) is changing or owes an upstream call (a create in doubt
    does not count)."""
    query = _WORK_LEFT if owner is None else _WORK_LEFT.where(Instance.owner == owner)
    async with db.read() as session:
        return await session.scalar(query) is not None


def fresh_create(row: Row[Any], now: datetime) -> bool:
    """A create never sent (or known not made) and due: nothing can exist upstream under its unique name,
    so it goes out without waiting for a listing."""
    return (
        row.pending_action == Action.CREATE
        and row.novita_instance_id is None
        and row.create_attempted_at is None
        and row.status in (Status.CREATING, Status.RECOVERING)
        and (row.next_action_at is None or row.next_action_at <= now)
    )


def needs_attention(row: Row[Any], listing: Listing, now: datetime) -> bool:
    """Whether a tick must lease and process this row: it has an action to carry out or a deadline that
    passed, or Novita shows it otherwise than we last saw it. A row sitting in the same upstream status
    (steady, or pulling its image for minutes) is left alone; the periodic full pass looks at it anyway.
    Stopping and terminating rows are always processed: an accepted action is re-issued on a timer. A row
    written since the listing began is judged by the next one."""
    if row.pending_action is not None or row.novita_instance_id is None:
        return True
    if row.status in (Status.STOPPING, Status.TERMINATING):
        return True
    if row.phase_deadline_at is not None and now >= row.phase_deadline_at:
        return True
    if not listing.knows(row.updated_at):
        return False
    upstream = listing.by_id.get(row.novita_instance_id)
    if upstream is None or upstream.status != row.upstream_status:
        return True
    # Novita's notice of a reclaim to come changes no status: the row is looked at during the notice (its
    # event is written once).
    return bool(upstream.error) or upstream.spot_notified


def priority(row: Row[Any]) -> int:
    """Creates first, then other actions asked for, then what Novita shows changed."""
    if row.pending_action == Action.CREATE:
        return 0
    return 1 if row.pending_action is not None else 2


class FullPass:
    """A full pass not finished yet: the watched rows it has still to look at, taken over the next ticks."""

    def __init__(self) -> None:
        self._left: dict[str, None] = {}  # in the order read

    def begin(self, watched: Iterable[str]) -> None:
        """Start a pass over `watched`, unless one is still under way (it goes on)."""
        if not self._left:
            self._left = dict.fromkeys(watched)

    def next_rows(self, watched: set[str], skip: Callable[[str], bool]) -> list[str]:
        """The next rows of the pass this tick looks at (at most SWEEP_PER_TICK), leaving out rows no longer
        watched (terminated meanwhile) and those `skip` says are taken care of already."""
        for row_id in [i for i in self._left if i not in watched]:
            del self._left[row_id]
        return [i for i in self._left if not skip(i)][:SWEEP_PER_TICK]

    def seen(self, row_ids: Iterable[str]) -> None:
        """These rows were claimed here, or are held by another replica that looks at them."""
        for row_id in row_ids:
            self._left.pop(row_id, None)
