"""GET /api/instances/{id} answered from the read cache before the framework sees the request.

Clients poll this route (the quick-start's examples do, per instance, every few seconds), and when the
view is cached its answer is already rendered. FastAPI's routing, dependency solving and response
plumbing then cost more than half of the request's CPU (docs/performance.md). Only that case is
answered here: a cache miss, a query string (long-polls), a missing or foreign key all go on to the
FastAPI route, which stays the one definition of the route's behaviour. The request middleware around
this one still adds the ids, the metrics (under the route's own template) and the access log.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from novita_gpu.instances.read_cache import CachedView
from novita_gpu.instances.router import get_instance, router

_PREFIX = router.prefix + "/"
_ROUTE = next(route for route in router.routes if getattr(route, "endpoint", None) is get_instance)
_CONTENT_TYPE = (b"content-type", b"application/json")


class CachedInstanceReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = _cached_answer(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        headers = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _cached_answer(scope: Scope) -> bytes | None:
    """The body the route would answer with, when it is cached and the caller may see it; else None."""
    path: str = scope["path"]
    if scope["method"] != "GET" or scope["query_string"] or scope.get("root_path") or not path.startswith(_PREFIX):
        return None
    instance_id = path[len(_PREFIX) :]
    state = scope["app"].state
    services = getattr(state, "services", None)
    if not instance_id or "/" in instance_id or services is None:
        return None
    cached: CachedView | None = services.instances.reads.view(instance_id)
    if cached is None or state.api_keys.owner_for(Headers(scope=scope)) != cached.owner:
        return None
    return cached.body
