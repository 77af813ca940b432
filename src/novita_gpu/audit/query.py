"""Reading the audit trail: pages newest first, filtered, under the caller's role.

An admin reads its own team's rows (a `team` naming another team is 404 TEAM_NOT_FOUND, as if it did not
exist); an owner reads every team's, and rows of no team (retention's); viewers and members read none
(403 FORBIDDEN). Pages are ordered by (at, id), newest first; a cursor is the position after a page's last
row, `<at in µs since the epoch>.<row id>` (kit/cursor.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select

from novita_gpu.kit.clock import iso
from novita_gpu.kit.cursor import decode_cursor, encode_cursor
from novita_gpu.kit.db import Database
from novita_gpu.kit.errors import Forbidden, InvalidInput, TeamNotFound
from novita_gpu.kit.tables import AuditEvent, Team
from novita_gpu.teams.keys import Principal

# The cursors this trail issues: a row id is a number (kit/cursor.py's pattern allows any id).
AUDIT_CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9]{1,18}$"
_AUDIT_CURSOR = re.compile(AUDIT_CURSOR_PATTERN)


@dataclass(frozen=True, slots=True)
class AuditFilters:
    team: str | None = None  # a team's id or name
    actor: str | None = None
    target: str | None = None
    action: str | None = None
    start: datetime | None = None  # at >= start
    end: datetime | None = None  # at < end


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[dict[str, Any]]
    next_cursor: str | None


def event_view(row: AuditEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": iso(row.at),
        "team": row.team,
        "actor": row.actor,
        "actorName": row.actor_name,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "requestId": row.request_id,
        "details": row.details,
    }


def _position(cursor: str) -> tuple[datetime, int]:
    at, row_id = decode_cursor(cursor)
    if not _AUDIT_CURSOR.fullmatch(cursor):
        raise InvalidInput(
            "INVALID_CURSOR",
            "The cursor is not one this API returned; pass a page's nextCursor as it is.",
            field="cursor",
            field_message="not a cursor this API returned",
        )
    return at, int(row_id)


async def _team_id(db: Database, ref: str) -> str:
    async with db.read() as session:
        found: str | None = await session.scalar(select(Team.id).where(or_(Team.id == ref, Team.name == ref)))
    if found is None:
        raise TeamNotFound(ref)
    return found


async def _visible(db: Database, principal: Principal, team: str | None) -> ColumnElement[bool] | None:
    """The rows the principal may read, narrowed to `team`: None for every row (an owner, no team named)."""
    if principal.admin:
        return None if team is None else AuditEvent.team == await _team_id(db, team)
    if not principal.may("admin"):
        raise Forbidden(f"This key's role ({principal.role}) may not read the audit trail; it takes admin.")
    if team is not None and await _team_id(db, team) != principal.team:
        raise TeamNotFound(team)  # another team's trail is not found, as the team itself is not
    return AuditEvent.team == principal.team


async def read_page(
    db: Database, principal: Principal, filters: AuditFilters, *, limit: int, cursor: str | None
) -> AuditPage:
    position = _position(cursor) if cursor is not None else None
    where: list[ColumnElement[bool]] = []
    if (visible := await _visible(db, principal, filters.team)) is not None:
        where.append(visible)
    for column, wanted in (
        (AuditEvent.actor, filters.actor),
        (AuditEvent.target, filters.target),
        (AuditEvent.action, filters.action),
    ):
        if wanted is not None:
            where.append(column == wanted)
    if filters.start is not None:
        where.append(AuditEvent.at >= filters.start)
    if filters.end is not None:
        where.append(AuditEvent.at < filters.end)
    if position is not None:
        at, row_id = position
        where.append((AuditEvent.at < at) | ((AuditEvent.at == at) & (AuditEvent.id < row_id)))
    query = select(AuditEvent).where(*where).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit + 1)
    async with db.read() as session:
        rows = list((await session.execute(query)).scalars())
    more, rows = len(rows) > limit, rows[:limit]
    return AuditPage(
        [event_view(row) for row in rows], encode_cursor(rows[-1].at, str(rows[-1].id)) if more and rows else None
    )
