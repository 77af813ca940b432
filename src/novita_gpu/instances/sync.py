"""POST /api/instances/sync: reconcile with Novita now, answered in the caller's own numbers.

The pass itself covers every key's instances (one listing of Novita serves them all, and a pass for one
key alone would list Novita just the same), but what it answers is the caller's: how many of its own
instances the pass claimed, changed and saw become ready, and whether any of its own is still changing.
Counting every key's would tell one key how busy the others are."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from novita_gpu.instances.reconciler.attention import work_left
from novita_gpu.kit.tables import Instance

if TYPE_CHECKING:
    from novita_gpu.instances.readiness import Prober
    from novita_gpu.instances.reconciler.worker import Reconciler
    from novita_gpu.kit.db import Database

_CHUNK = 500  # ids per look-up (a full pass may touch thousands of rows)


async def sync_for(db: Database, reconciler: Reconciler, prober: Prober, owner: str) -> dict[str, Any]:
    """One full reconciler pass and one readiness probe, then the caller's share of what they did."""
    result = await reconciler.tick(full=True)
    became_ready = await prober.tick()
    own = await owned(db, owner, {*result.claimed_ids, *result.changed_ids, *became_ready})
    return {
        "claimed": len(own.intersection(result.claimed_ids)),
        "changed": len(own.intersection(result.changed_ids)),
        "ready": len(own.intersection(became_ready)),
        "busy": result.busy and await work_left(db, owner),
    }


async def owned(db: Database, owner: str, ids: Iterable[str]) -> set[str]:
    """Those of `ids` that are `owner`'s instances."""
    wanted = sorted(set(ids))
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = select(Instance.id).where(Instance.id.in_(chunk), Instance.owner == owner)
        found.update(row[0] for row in await db.fetch(query))
    return found
