"""The audit trail's HTTP side: every mutating request to a route of the API leaves one row (docs/audit.md).

Outermost, as pure ASGI: it sees the answer exactly as the client gets it (the request middleware's own
413 and 500 included) and writes the row once the answer is sent, in a transaction of its own. The row
names the caller (the principal the auth dependency left on the request's state; for a request refused
before that ran, the key it presents), the route's action (audit/actions.py), the target (the path's id,
or a create's new id from its answer), the outcome (`ok` or the answer's error code), the request id and
the status. Neither a body nor a header is kept: only the answer's id and error code are read from it.

A request without a valid key (401) leaves no row: anybody can send one, so its rows would grow the store
at a stranger's pace while naming nobody; the access log and `http_requests_total` count them. Nor does a
request no route takes (404 for the path, 405 for the method): nothing was acted on.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novita_gpu.audit.actions import OK, RouteAction, route_action
from novita_gpu.audit.recorder import AuditEntry
from novita_gpu.teams.keys import Principal

log = structlog.get_logger(__name__)

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_ANSWER_READ = 64 * 1024  # bytes of a JSON answer read for its id or error code; larger answers are not read


class _Answer:
    __slots__ = ("body", "json", "status")

    def __init__(self) -> None:
        self.status = 500
        self.json = False
        self.body = bytearray()

    def see(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            types = [v for k, v in message.get("headers", ()) if k.lower() == b"content-type"]
            self.json = bool(types) and types[0].startswith(b"application/json")
        elif message["type"] == "http.response.body" and self.json and len(self.body) <= _ANSWER_READ:
            self.body += message.get("body", b"")

    def fields(self) -> dict[str, Any]:
        if not self.json or not self.body or len(self.body) > _ANSWER_READ:
            return {}
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _outcome(status: int, answer: dict[str, Any]) -> str:
    if status < 400:
        return OK
    error = answer.get("error")
    code = _text(error.get("code")) if isinstance(error, dict) else None
    return code or f"HTTP_{status}"


def entry_for(
    principal: Principal,
    spec: RouteAction,
    path_params: dict[str, Any],
    status: int,
    answer: dict[str, Any],
    request_id: str | None,
) -> AuditEntry:
    """The row of one request: what it did, to what, in which team, and how it went."""
    from_path = "/".join(str(v) for v in path_params.values()) or None
    target = (_text(answer.get(spec.target)) if spec.target and status < 400 else None) or from_path
    team = (_text(answer.get(spec.team)) if spec.team and status < 400 else None) or principal.team
    return AuditEntry(
        actor=principal.key_id,
        action=spec.name,
        outcome=_outcome(status, answer),
        team=team,
        actor_name=principal.key_name,
        target=target,
        request_id=request_id,
        details={"status": status},
    )


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        answer = _Answer()

        async def watched(message: Message) -> None:
            answer.see(message)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            await self._record(scope, answer)
            raise
        await self._record(scope, answer)

    async def _record(self, scope: Scope, answer: _Answer) -> None:
        template = getattr(scope.get("route"), "path", None)
        if not isinstance(template, str) or answer.status == 405:
            return  # no route of the API takes this path and method: nothing was acted on
        state = scope.get("state") or {}
        try:
            principal = state.get("principal") or await self._presented(scope)
            if principal is None:
                return  # refused as unauthenticated (401): see the module's docstring
            spec = route_action(scope["method"], template)
            entry = entry_for(
                principal,
                spec,
                dict(scope.get("path_params") or {}),
                answer.status,
                answer.fields(),
                state.get("request_id"),
            )
            await scope["app"].state.services.audit.record(entry)
        except Exception as exc:  # the answer is sent: a row that cannot be written is logged, not raised
            log.exception("audit_write_failed", error_type=type(exc).__name__, request_id=state.get("request_id"))

    @staticmethod
    async def _presented(scope: Scope) -> Principal | None:
        """Who the request's key is, for a request refused before the auth dependency ran (a malformed body,
        an unknown query parameter)."""
        found: Principal | None = await scope["app"].state.api_keys.principal(Headers(scope=scope))
        return found
