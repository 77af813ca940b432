"""Guarded worker writes: a worker writes a row only while it is still the row the worker read.

Every write bumps `version`. A worker holding a snapshot reads back just the version (and its lease
token) inside its write transaction, locked on PostgreSQL; SQLite's write transaction holds the
file's write lock already. If they match, the snapshot is the stored row, and it is attached as is
rather than loaded again: a full ORM load was the largest cost of a lifecycle step.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.tables import Instance

_CURRENT = select(Instance.version, Instance.lease_token).where(Instance.id == bindparam("row_id"))
_CURRENT_LOCKED = _CURRENT.with_for_update()


async def reattach_if_current(
    session: AsyncSession, snap: Instance, *, lock: bool, lease_token: str | None = None
) -> Instance | None:
    """`snap` attached to `session` if the stored row still has its version (and `lease_token`, when
    given); None if the row changed, moved to another worker or is gone."""
    conn = await session.connection()
    current = (await conn.execute(_CURRENT_LOCKED if lock else _CURRENT, {"row_id": snap.id})).one_or_none()
    if current is None or current.version != snap.version:
        return None
    if lease_token is not None and current.lease_token != lease_token:
        return None
    return await session.merge(snap, load=False)
