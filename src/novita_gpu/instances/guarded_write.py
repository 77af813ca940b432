"""Guarded worker writes: a worker writes a row only while it is still the row the worker read.

Every write bumps `version`. A worker holding a snapshot reads back just the version (and its lease
token) inside its write transaction, locked on PostgreSQL; SQLite's write transaction holds the
file's write lock already. If they match, the snapshot is the stored row, and it is attached as is
rather than loaded again: a full ORM load was the largest cost of a lifecycle step.

A write that only sets columns (no event, no webhook) needs no attached row at all: one UPDATE whose
WHERE holds the version and lease it read (`update_if_current`). The two writes around each upstream
create are such writes; the ORM's unit of work cost more than the statement (docs/performance.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from novita_gpu.kit.db import table_of
from novita_gpu.kit.tables import Instance

_CURRENT = select(Instance.version, Instance.lease_token).where(Instance.id == bindparam("row_id"))
_CURRENT_LOCKED = _CURRENT.with_for_update()
_INSTANCES = table_of(Instance)


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


async def update_if_current(
    session: AsyncSession, snap: Instance, values: dict[str, Any], *, lease_token: str | None
) -> bool:
    """Set `values` on the stored row and bump its version, in one UPDATE that lands only if the row still
    has `snap`'s version (and `lease_token`, when given). Once the transaction commits, `show_written`
    makes `snap` the row as written."""
    where = [_INSTANCES.c.id == snap.id, _INSTANCES.c.version == snap.version]
    if lease_token is not None:
        where.append(_INSTANCES.c.lease_token == lease_token)
    conn = await session.connection()
    result = await conn.execute(update(_INSTANCES).where(*where).values(version=snap.version + 1, **values))
    return result.rowcount == 1


def show_written(snap: Instance, values: dict[str, Any]) -> Instance:
    """`snap` (detached) as `update_if_current` wrote it: its values and the next version, unmodified."""
    for key, value in values.items():
        set_committed_value(snap, key, value)
    set_committed_value(snap, "version", snap.version + 1)
    return snap
