"""Unknown query parameters are a 400 that names them, on every route.

FastAPI ignores query parameters a route does not declare, so `?stauts=ready` listed every instance, as
if the filter had been applied and matched everything. One app-level dependency compares the request's
query keys with the parameters the matched route declares (the same ones /openapi.json lists, both being
read from the route's dependency tree), so the document stays the whole truth: what it does not list is
refused. A request without a query string costs one dictionary look-up.

`date_time` reads a date-time parameter (`from`, `to`) as the document states it: RFC 3339, else 400.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime, timedelta

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request

from novita_gpu.web.errors import ApiError

_declared: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameter names (aliases) of a route and all its dependencies."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(field.alias for field in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)


def declared_query(route: APIRoute) -> frozenset[str]:
    cached = _declared.get(id(route))
    if cached is None or cached[0] is not route:
        cached = _declared[id(route)] = (route, _query_names(route.dependant))
    return cached[1]


def _shown(key: str) -> str:
    return key if len(key) <= 64 else key[:61] + "..."


async def refuse_unknown_query(request: Request) -> None:
    """400 VALIDATION_ERROR naming each query parameter the route does not take (with a likely meant one)."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = declared_query(route)
    unknown = sorted({_shown(key) for key in request.query_params if key not in declared})
    if not unknown:
        return
    takes = f"it takes {', '.join(sorted(declared))}" if declared else "it takes none"
    details = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(declared), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        details.append({"field": key, "message": f"unknown query parameter{hint}"})
    raise ApiError(
        400,
        "VALIDATION_ERROR",
        f"Unknown query parameter(s) {', '.join(repr(k) for k in unknown)} for this route; {takes}.",
        details=details,
    )


# RFC 3339 date-time, what the document's `format: date-time` means (a number is not one: "0.5" is refused).
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))", re.ASCII
)


def date_time(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 date-time in UTC; a leap second counts as the end of its minute, and instants outside
    Python's years 1-9999 as the nearest one inside (a period that far out holds nothing anyway). `name` is the parameter, named in the 400."""
    if value is None:
        return None
    found = _DATE_TIME.fullmatch(value)
    invalid = ApiError(
        400,
        "VALIDATION_ERROR",
        f"{name} must be an RFC 3339 date-time, e.g. 2026-11-01T00:00:00Z.",
        details=[{"field": name, "message": "not an RFC 3339 date-time"}],
    )
    if found is None:
        raise invalid
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    micro = int((found.group(7) or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if found.group(9):
        offset = timedelta(hours=int(found.group(10)), minutes=int(found.group(11)))
        offset = -offset if found.group(9) == "-" else offset
    try:
        local = datetime(max(1, year), month, day, hour, minute, min(second, 59), micro)
    except ValueError:
        raise invalid from None
    try:
        return (local - offset).replace(tzinfo=UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if offset > timedelta(0) else datetime.max.replace(tzinfo=UTC)
