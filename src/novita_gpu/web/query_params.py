"""Unknown query parameters are a 400 that names them, on every route.

FastAPI ignores query parameters a route does not declare, so `?stauts=ready` listed every instance, as
if the filter had been applied and matched everything. One app-level dependency compares the request's
query keys with the parameters the matched route declares (the same ones /openapi.json lists, both being
read from the route's dependency tree), so the document stays the whole truth: what it does not list is
refused. A request without a query string costs one dictionary look-up.
"""

from __future__ import annotations

import difflib

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
