"""Writing audit rows: in the caller's transaction (a worker's action and its row commit together), or in a
transaction of their own (a request's row, written once its answer is sent).

A row holds who (a key's id and name, or system:<worker>), the team acted in, the action, its target, the
outcome (`ok` or the error's code) and the request id, with a few details (the HTTP status, a worker's
reason). Never a request's body, a header or an answer: nothing that could hold a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import object_session

from novita_gpu.audit.actions import OK
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import AuditEvent

# The columns' widths (kit/tables.py): longer values are cut to fit, the request id kept whole in details.
_WIDTHS = {"team": 64, "actor": 64, "actor_name": 63, "action": 80, "target": 120, "outcome": 40, "request_id": 40}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    outcome: str = OK
    team: str | None = None
    actor_name: str | None = None
    target: str | None = None
    request_id: str | None = None
    details: dict[str, Any] | None = None


def system(
    actor: str,
    action: str,
    *,
    team: str | None,
    target: str | None,
    outcome: str = OK,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """A worker's action: `actor` is one of actions.py's system:<worker> names."""
    return AuditEntry(actor, action, outcome, team, None, target, None, details)


class _Adds(Protocol):
    def add(self, instance: object) -> None: ...


def _fit(column: str, value: str | None) -> str | None:
    return None if value is None else value[: _WIDTHS[column]]


def row_of(entry: AuditEntry, at: datetime) -> AuditEvent:
    details = dict(entry.details or {})
    if entry.request_id is not None and len(entry.request_id) > _WIDTHS["request_id"]:
        details["requestId"] = entry.request_id
    return AuditEvent(
        at=at,
        team=_fit("team", entry.team),
        actor=_fit("actor", entry.actor),
        actor_name=_fit("actor_name", entry.actor_name),
        action=_fit("action", entry.action),
        target=_fit("target", entry.target),
        outcome=_fit("outcome", entry.outcome),
        request_id=_fit("request_id", entry.request_id),
        details=details or None,
    )


def add(session: _Adds, entry: AuditEntry, at: datetime) -> None:
    """Record `entry` in the session's transaction: it commits, or rolls back, with the action."""
    session.add(row_of(entry, at))


def add_beside(row: object, entry: AuditEntry, at: datetime) -> bool:
    """Record `entry` in the transaction `row` is loaded in, for code handed a row but not its session (a
    spot recovery's end); False when `row` is in no session (nothing is recorded)."""
    session = object_session(row)
    if session is None:
        return False
    add(session, entry, at)
    return True


class AuditRecorder:
    """Rows written in a transaction of their own (a request's, after its answer)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def record(self, entry: AuditEntry) -> None:
        async with self.db.write() as session:
            add(session, entry, self.clock.now())
