"""What /health reports of the instance rows (its `instances` check): rows the reconciler should have ended.

A row past its deadline by more than a minute (a status that ends by a deadline, or a create in doubt past
the startup deadline) means the reconciler is not keeping up or is stuck; a failed row whose stop or delete
Novita still has not carried out may be billing. Either makes the service `degraded`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from novita_gpu.instances.lifecycle import Status
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance

# Statuses that end by a deadline, and how late past it /health starts to report a row.
_DEADLINED = frozenset({Status.CREATING, Status.STARTING, Status.HEALTH_CHECKING, Status.STOPPING, Status.TERMINATING})
_OVERDUE_GRACE = timedelta(seconds=60)


async def overdue_report(db: Database, clock: Clock, settings: Settings) -> dict[str, Any]:
    """Rows past their deadline, and failed rows whose stop or delete is still being retried."""
    now = clock.now()
    cut = now - _OVERDUE_GRACE
    doubt_cut = cut - timedelta(seconds=settings.startup_timeout_seconds)
    late = or_(
        and_(Instance.status.in_(list(_DEADLINED)), Instance.phase_deadline_at < cut),
        and_(Instance.status != Status.TERMINATED, Instance.create_attempted_at < doubt_cut),
    )
    async with db.read() as session:
        overdue = await session.scalar(select(func.count()).select_from(Instance).where(late))
        retrying = await session.scalar(
            select(func.count())
            .select_from(Instance)
            .where(Instance.status == Status.FAILED, Instance.pending_action.is_not(None))
        )
    return {
        "status": "degraded" if overdue or retrying else "up",
        "pastDeadline": overdue or 0,
        "failedActionsRetrying": retrying or 0,
    }
