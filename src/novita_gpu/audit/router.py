"""GET /api/audit: the audit trail, newest first, in cursor pages (admins: their team's; owners: every team's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from novita_gpu.audit.query import AUDIT_CURSOR_PATTERN, AuditFilters, read_page
from novita_gpu.audit.schemas import AuditPageAnswer
from novita_gpu.kit.schemas import NO_NUL
from novita_gpu.web.auth import CallerDep
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.json_body import StrictJSONRoute
from novita_gpu.web.query_params import date_time
from novita_gpu.web.responses import JSONResponse

router = APIRouter(prefix="/api", tags=["audit"], route_class=StrictJSONRoute)

ACTION_PATTERN = r"^[a-z0-9_.:-]{1,80}$"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


def _text(most: int, description: str) -> Any:
    return Query(min_length=1, max_length=most, pattern=NO_NUL, description=description)


@router.get(
    "/audit",
    summary="The audit trail, newest first: who did what to what, and how it went (admin keys)",
    response_model=AuditPageAnswer,
)
async def audit(
    caller: CallerDep,
    services: ServicesDep,
    team: Annotated[str | None, _text(64, "Owner keys: one team's events (its id or name).")] = None,
    actor: Annotated[str | None, _text(64, "A key's id (ak_..., key-...) or system:<worker>.")] = None,
    target: Annotated[str | None, _text(120, "An instance, volume, key or team id.")] = None,
    action: Annotated[str | None, Query(pattern=ACTION_PATTERN, description="e.g. instance.stop")] = None,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            description="RFC 3339 date-time: events at or after.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(alias="to", description="RFC 3339 date-time: events before.", json_schema_extra={"format": "date-time"}),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            description="A page's nextCursor, as it is; anything else is 400 INVALID_CURSOR.",
            json_schema_extra={"pattern": AUDIT_CURSOR_PATTERN},  # stated; read_page refuses with its own code
        ),
    ] = None,
) -> JSONResponse:
    filters = AuditFilters(team, actor, target, action, date_time(start, "from"), date_time(end, "to"))
    page = await read_page(services.db, caller, filters, limit=limit, cursor=cursor)
    return JSONResponse({"events": page.events, "nextCursor": page.next_cursor})
