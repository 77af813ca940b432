"""GET /api/instances/{id} and the plain list page answered from the read cache before the framework.

Clients poll these routes (the quick-start's examples poll each instance every few seconds; dashboards
poll the list), and when the answer is cached it is already rendered. FastAPI's routing, dependency
solving, query validation and response plumbing then cost more than half of the request's CPU
(docs/performance.md). Only those cases are answered here: a view by id, and the list with no query
but `limit`. A cache miss, any other query string (long-polls, filters, cursors), a missing or foreign
key all go on to the FastAPI routes, which stay the one definition of their behaviour. The request
middleware around this one still adds the ids, the metrics (under the route's own template) and the
access log.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from novita_gpu.instances.read_cache import CachedView, ListPage, list_key
from novita_gpu.instances.router import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, get_instance, list_instances, router

_PREFIX = router.prefix + "/"
_ROUTE = next(route for route in router.routes if getattr(route, "endpoint", None) is get_instance)
_LIST_ROUTE = next(route for route in router.routes if getattr(route, "endpoint", None) is list_instances)
_LIST_QUERY = re.compile(rb"(?:limit=([1-9][0-9]{0,2}))?")
_CONTENT_TYPE = (b"content-type", b"application/json")


class CachedInstanceReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _cached_answer(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        scope["route"], body = answer
        headers = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _cached_answer(scope: Scope) -> tuple[BaseRoute, bytes] | None:
    """The route and the body it would answer with, when that is cached and the caller may see it."""
    path: str = scope["path"]
    if scope["method"] != "GET" or scope.get("root_path") or not path.startswith(router.prefix):
        return None
    services = getattr(scope["app"].state, "services", None)
    if services is None:
        return None
    if path == router.prefix:
        return _cached_list(scope, services)
    instance_id = path[len(_PREFIX) :]
    if scope["query_string"] or not path.startswith(_PREFIX) or not instance_id or "/" in instance_id:
        return None
    cached: CachedView | None = services.instances.reads.view(instance_id)
    if cached is None or scope["app"].state.api_keys.owner_for(Headers(scope=scope)) != cached.owner:
        return None
    return _ROUTE, cached.body


def _cached_list(scope: Scope, services: Any) -> tuple[BaseRoute, bytes] | None:
    query = _LIST_QUERY.fullmatch(scope["query_string"])
    limit = int(query.group(1) or DEFAULT_LIST_LIMIT) if query else 0
    if not 1 <= limit <= MAX_LIST_LIMIT:
        return None
    owner = scope["app"].state.api_keys.owner_for(Headers(scope=scope))
    page: ListPage | None = None if owner is None else services.instances.reads.list(list_key(owner, limit=limit))
    return None if page is None else (_LIST_ROUTE, page.body)
