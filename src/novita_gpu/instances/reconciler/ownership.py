"""Ownership: every upstream instance under a record's unique names belongs to that record alone.

A record's names are its upstream name and, after spot recoveries that recreated it, that name with
`-r<n>` (recovery.py). An instance under one of them that the record does not want is deleted on sight,
however late it appears: a duplicate (the record holds another instance), a create that completed after
its record settled without one (stopped, deleted or failed before Novita answered) or under a name the
record no longer creates under, or the instance a recovery replaced once the replacement is ready (unless
kept). Instances under names no record has are not ours and are never touched. Each deletion is logged as
`reconcile_stray_deleted`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Row, select

from novita_gpu.instances import recovery
from novita_gpu.instances.lifecycle import SETTLED, Status, is_leaving
from novita_gpu.instances.listing import Listing
from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import NotFound, NovitaClient, NovitaError

log = structlog.get_logger(__name__)

# Names per look-up of their records (SQLite builds may allow as few as 999 bound parameters).
_NAMES_PER_QUERY = 100


async def remove_strays(db: Database, client: NovitaClient, listing: Listing, watched: Sequence[Row[Any]]) -> None:
    """Delete every listed instance under a record's name that the record does not want (`watched`: the
    tick's candidate rows, which know their instances)."""
    known = {w.novita_instance_id for w in watched if w.novita_instance_id}
    unknown = [u for u in listing.by_id.values() if u.id not in known and u.name and not is_leaving(u.status)]
    if not unknown:
        return
    owners: dict[str, Row[Any]] = {}
    names = sorted({recovery.name_parts(u.name)[0] for u in unknown} | {u.name for u in unknown})
    async with db.read() as session:
        for start in range(0, len(names), _NAMES_PER_QUERY):
            found = await session.execute(
                select(
                    Instance.id,
                    Instance.upstream_name,
                    Instance.upstream_generation,
                    Instance.novita_instance_id,
                    Instance.status,
                    Instance.recovery,
                ).where(Instance.upstream_name.in_(names[start : start + _NAMES_PER_QUERY]))
            )
            owners.update({r.upstream_name: r for r in found})
    for upstream in unknown:
        owner, generation = owners.get(upstream.name), 0
        if owner is None:
            root, generation = recovery.name_parts(upstream.name)
            owner = owners.get(root) if generation else None
        if owner is None:
            continue
        if owner.status != Status.TERMINATED:
            if (
                owner.novita_instance_id is None
                and owner.status not in SETTLED
                and generation == owner.upstream_generation
            ):
                continue  # the record is waiting for its create to show: it adopts this instance
            if owner.novita_instance_id == upstream.id:
                continue  # the record's own instance (it was adopted since the watched rows were read)
            if upstream.id in recovery.wanted_ids(owner.recovery):
                continue  # the instance a recovery under way replaces, or one kept (keepReclaimed)
        why = "duplicate" if owner.novita_instance_id else f"unwanted by a {owner.status} record"
        try:
            await client.delete_instance(upstream.id)
        except NotFound:
            continue
        except NovitaError as exc:
            log.warning("reconcile_stray_delete_failed", novita_instance_id=upstream.id, error=type(exc).__name__)
            continue
        log.warning("reconcile_stray_deleted", instance_id=owner.id, novita_instance_id=upstream.id, why=why)
