"""What /health reports of the instance rows (its `instances` check): rows the reconciler should have ended,
and creates in doubt.

A row past its deadline by more than a minute (a status that ends by a deadline, a create in doubt past the
startup deadline, or a create whose sender died and that should have been sent again by now) means the
reconciler is not keeping up or is stuck; a failed row whose stop or delete Novita still has not carried
out may be billing. Either makes the service `degraded`. Creates in doubt (sent, and neither answered nor
seen in Novita's list although their call would have ended) are counted, with the age of the oldest: they
resolve by themselves (adopted, sent again, or given up at the startup deadline), so they only say that
Novita's answers are being lost, or that a replica died while sending.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select

from novita_gpu.instances.lifecycle import Action, Status
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database, UTCDateTime
from novita_gpu.kit.in_doubt import longest_create_call
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance

# Statuses that end by a deadline, and how late past it /health starts to report a row.
_DEADLINED = frozenset({Status.CREATING, Status.STARTING, Status.HEALTH_CHECKING, Status.STOPPING, Status.TERMINATING})
_OVERDUE_GRACE = timedelta(seconds=60)

_CUT, _DOUBT_CUT, _CALL_ENDED = (bindparam(name, type_=UTCDateTime()) for name in ("cut", "doubt_cut", "call_ended"))
_UNANSWERED = and_(
    Instance.pending_action == Action.CREATE,
    Instance.novita_instance_id.is_(None),
    Instance.create_attempted_at.is_not(None),
)
_LATE = or_(
    and_(Instance.status.in_(list(_DEADLINED)), Instance.phase_deadline_at < _CUT),
    and_(Instance.status != Status.TERMINATED, Instance.create_attempted_at < _DOUBT_CUT),
    and_(_UNANSWERED, Instance.next_action_at < _CUT),  # a dead sender's create not sent again
)
_IN_DOUBT = and_(_UNANSWERED, Instance.create_attempted_at < _CALL_ENDED)
# One scan for the whole check, built once: /health runs it on every call.
_REPORT = select(
    func.count().filter(_LATE),
    func.count().filter(and_(Instance.status == Status.FAILED, Instance.pending_action.is_not(None))),
    func.count().filter(_IN_DOUBT),
    func.min(Instance.create_attempted_at).filter(_IN_DOUBT),
).select_from(Instance)


async def overdue_report(db: Database, clock: Clock, settings: Settings) -> dict[str, Any]:
    """Rows past their deadline, failed rows whose stop or delete is still being retried, and creates in
    doubt (how many, and how long the oldest has been)."""
    now = clock.now()
    cut = now - _OVERDUE_GRACE
    [(overdue, retrying, in_doubt, oldest)] = await db.fetch(
        _REPORT,
        {
            "cut": cut,
            "doubt_cut": cut - timedelta(seconds=settings.startup_timeout_seconds),
            "call_ended": now - longest_create_call(settings),
        },
    )
    return {
        "status": "degraded" if overdue or retrying else "up",
        "pastDeadline": overdue or 0,
        "failedActionsRetrying": retrying or 0,
        "createsInDoubt": in_doubt or 0,
        "oldestCreateInDoubtSeconds": round((now - oldest).total_seconds(), 1) if oldest is not None else 0,
    }
