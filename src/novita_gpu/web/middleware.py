"""Per-request plumbing as pure ASGI: ids, body-size limit, metrics, access log, last-resort 500.

Pure ASGI rather than BaseHTTPMiddleware: that one costs a task and a memory stream per request
and breaks contextvars propagation into the endpoint.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novita_gpu.observability.logging import log_request
from novita_gpu.observability.metrics import UNMATCHED_ROUTE, Metrics
from novita_gpu.web.errors import unexpected

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"
_QUIET_PATHS = frozenset({"/metrics", "/health"})
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ID_HEADERS = frozenset({REQUEST_ID_HEADER.encode(), CORRELATION_ID_HEADER.encode()})


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit.

    An HTTPException so FastAPI re-raises it as is instead of turning it into a 400; whatever the
    app then answers, the middleware replaces it with its own 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit))


def _too_large_message(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."


def _clean_id(raw: bytes | None) -> str:
    if raw is not None:
        value = raw.decode("latin-1")
        if _VALID_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


def _route_template(scope: Scope, root_path_before: str) -> str:
    """The matched route's template, mount prefix included ('/emulator/v1/x/{id}'), else 'unmatched'.

    Mounts add their prefix to root_path while the route inside knows only its own part. A request
    that reached a mount but no route inside it (or a plain ASGI app) counts as '<prefix>/{path}'.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    mount_prefix = str(scope.get("root_path", ""))[len(root_path_before) :]
    if isinstance(path, str) and not isinstance(route, Mount):
        return mount_prefix + path
    return mount_prefix + "/{path}" if mount_prefix else UNMATCHED_ROUTE


class _Exchange:
    """State of one request/response exchange as seen by the middleware."""

    __slots__ = ("body_too_large", "received", "response_started", "status")

    def __init__(self) -> None:
        self.status = 500
        self.response_started = False
        self.body_too_large = False
        self.received = 0


class RequestContextMiddleware:
    """Request/correlation ids, body-size limit, metrics by route template and the access log."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, correlation_id, content_length = self._read_headers(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["correlation_id"] = correlation_id
        id_headers = [
            (REQUEST_ID_HEADER.encode(), request_id.encode()),
            (CORRELATION_ID_HEADER.encode(), correlation_id.encode()),
        ]
        root_path_before = str(scope.get("root_path", ""))
        exchange = _Exchange()
        with structlog.contextvars.bound_contextvars(request_id=request_id, correlation_id=correlation_id):
            try:
                if content_length is not None and content_length > self.max_body_bytes:
                    await self._too_large(send, exchange, request_id, id_headers)
                else:
                    await self._run_app(scope, receive, send, exchange, request_id, id_headers)
            finally:
                route = _route_template(scope, root_path_before)
                self._record(scope, route, exchange.status, time.perf_counter() - started)

    @staticmethod
    def _read_headers(scope: Scope) -> tuple[str, str, int | None]:
        request_id_raw = correlation_raw = length_raw = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and request_id_raw is None:
                request_id_raw = value
            elif name == b"x-correlation-id" and correlation_raw is None:
                correlation_raw = value
            elif name == b"content-length" and length_raw is None:
                length_raw = value
        request_id = _clean_id(request_id_raw)
        # A request that starts a chain is its own correlation id.
        correlation_id = _clean_id(correlation_raw) if correlation_raw is not None else request_id
        content_length = int(length_raw) if length_raw is not None and length_raw.isdigit() else None
        return request_id, correlation_id, content_length

    async def _run_app(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: _Exchange,
        request_id: str,
        id_headers: list[tuple[bytes, bytes]],
    ) -> None:
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            if exchange.body_too_large:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
                if exchange.received > limit:
                    exchange.body_too_large = True
                    raise BodyTooLarge(limit)
            return message

        async def tagged_send(message: Message) -> None:
            if exchange.body_too_large and not exchange.response_started:
                return  # the app's answer to the oversized body is replaced by our 413 below
            if message["type"] == "http.response.start":
                exchange.response_started = True
                exchange.status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() not in _ID_HEADERS]
                message = {**message, "headers": headers + id_headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, tagged_send)
        except BodyTooLarge:
            if exchange.response_started:
                raise
        except Exception as exc:
            if exchange.response_started:
                # Too late for an error answer; the server drops the connection.
                log.exception("unhandled_error_after_response_started", error_type=type(exc).__name__)
                raise
            status, code, message, headers = unexpected(exc)
            extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
            await self._send_error(send, exchange, status, code, message, request_id, [*id_headers, *extra])
            return
        if exchange.body_too_large and not exchange.response_started:
            await self._too_large(send, exchange, request_id, id_headers)

    async def _too_large(
        self, send: Send, exchange: _Exchange, request_id: str, id_headers: list[tuple[bytes, bytes]]
    ) -> None:
        exchange.body_too_large = True
        message = _too_large_message(self.max_body_bytes)
        await self._send_error(send, exchange, 413, "PAYLOAD_TOO_LARGE", message, request_id, id_headers)

    @staticmethod
    async def _send_error(
        send: Send,
        exchange: _Exchange,
        status: int,
        code: str,
        message: str,
        request_id: str,
        id_headers: list[tuple[bytes, bytes]],
    ) -> None:
        body = orjson.dumps({"error": {"code": code, "message": message, "requestId": request_id}})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *id_headers,
        ]
        exchange.status = status
        exchange.response_started = True
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _record(self, scope: Scope, route: str, status: int, seconds: float) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        self.metrics.observe_request(method, route, status, seconds)
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        log_request(fields, quiet=path in _QUIET_PATHS)
