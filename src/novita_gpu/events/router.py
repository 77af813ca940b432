"""GET /api/events/stream and GET /api/instances/{id}/events/stream: status changes as Server-Sent Events.

Each event is `id: <event id>`, `event: instance.<status>`, `data: <the webhook body>`. A comment line is
sent after EVENT_STREAM_HEARTBEAT_SECONDS without an event, so proxies keep the connection. `Last-Event-ID`
(or `?after=` when the header is absent) replays from the store what came after that id, then the stream
goes on live. When the server ends a stream (SLOW_READER, SHUTDOWN) it sends `event: close` with
`{"code", "message"}` and no id, so the client's last id is still the last event it got.

A stream opened without either starts with its position, a message that is only `id: <the newest event id
when it started>`: by the SSE rules it dispatches no event but sets the client's last event id, so a client
that reconnects before it has received any event (EventSource, the SDK) resumes from where it started
rather than from a new "now", and loses nothing that happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from novita_gpu.events.stream import EventHub, StreamClosed, Subscription
from novita_gpu.web.auth import Owner
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.errors import ApiError

log = structlog.get_logger(__name__)

router = APIRouter(tags=["events"])

EVENT_ID_PATTERN = r"^[0-9]{1,18}$"
_INSTANCE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_COALESCE = 100  # queued events written in one send
_RETRY = b"retry: 2000\n\n"  # EventSource reconnects after 2 s
_HEARTBEAT = b": keep-alive\n\n"

After = Annotated[
    str | None,
    Query(
        pattern=EVENT_ID_PATTERN,
        description="Replay the events after this id from the store first (0: every event kept). "
        "The Last-Event-ID header wins when both are given. Without either, only new events are sent.",
    ),
]
Follow = Annotated[
    bool,
    Query(description="false: send the stored events after `after` (or Last-Event-ID), then end the response."),
]
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}
_STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "Server-Sent Events: `id:` the event id, `event:` instance.<status>, `data:` the webhook "
        "body; `: keep-alive` comments; `event: close` with {code, message} when the server ends the stream. "
        "Opened without `after` or Last-Event-ID, the stream starts with a message that is only `id:` (its "
        "position: the newest event id), so a reconnect resumes from there.",
        # Before OpenAPI 3.2's itemSchema, an event stream's `schema` describes each event.
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "the event id: resume with Last-Event-ID"},
                        "event": {"type": "string", "description": "instance.<status>, or close"},
                        "data": {"type": "string", "description": "the webhook body, as JSON text"},
                        "retry": {"type": "integer"},
                    },
                }
            }
        },
    },
    # Errors are the usual JSON envelope, not a stream (the route's own media type would say so).
    "4XX": {"description": "400, 401, 404 or 429 (TOO_MANY_STREAMS, with Retry-After)", "content": _ERROR_BODY},
    "5XX": {"description": "503 while the store cannot be read", "content": _ERROR_BODY},
}
# Read from the request rather than declared: a declared optional header is documented as nullable, and
# a client that sends the text "null" would then be refused for following the document.
_LAST_EVENT_ID_DOC: dict[str, object] = {
    "parameters": [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "The id of the last event received; wins over `after`.",
            "schema": {"type": "string", "pattern": EVENT_ID_PATTERN},
        }
    ]
}
_EVENT_ID_RE = re.compile(EVENT_ID_PATTERN)


def _last_event_id(request: Request) -> str | None:
    value = request.headers.get("last-event-id")
    if value is None or _EVENT_ID_RE.fullmatch(value):
        return value
    message = "An event id: digits only, as sent in the stream's `id:` lines."
    raise ApiError(
        400,
        "VALIDATION_ERROR",
        "The request is invalid; see details.",
        details=[{"field": "Last-Event-ID", "message": message}],
    )


class EventStreamResponse(Response):
    """A stream of one subscription: its past from the store, then its queue, with heartbeats.

    A client that stops reading blocks the writes (the server's send waits while its socket is full).
    Each write is bounded by SEND_TIMEOUT_SECONDS: past it the stream ends and its slot is freed. The
    service's own server resets such a connection at that same deadline (kit/connections.py), which
    ends the write first; this bound holds under any other server too."""

    media_type = "text/event-stream"

    def __init__(self, hub: EventHub, sub: Subscription, after: int | None, upto: int, follow: bool) -> None:
        super().__init__(
            media_type=self.media_type,
            headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
        )
        # An open-ended body: no Content-Length (the server sends it chunked).
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.hub = hub
        self.sub = sub
        self.after = after
        self.upto = upto
        self.follow = follow
        self.stall_seconds = hub.send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            pump = asyncio.ensure_future(self._pump(send))
            watch = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, watch):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, TimeoutError, OSError):
                        await task
        finally:
            self.hub.unsubscribe(self.sub)

    async def _write(self, send: Send, body: bytes) -> None:
        async with asyncio.timeout(self.stall_seconds):
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _pump(self, send: Send) -> None:
        try:
            await self._stream(send)
        except TimeoutError:
            # The client has read nothing for stall_seconds: the stream ends, and its slot with it.
            log.warning("event_stream_stalled", owner=self.sub.owner, seconds=self.stall_seconds)

    async def _stream(self, send: Send) -> None:
        last = self.after
        if last is None:
            # The position this stream starts from, as an id-only message: the client's last event id
            # becomes it without any event being dispatched, and its reconnect replays what came after.
            await self._write(send, _RETRY + b"id: %d\n\n" % self.upto)
            last = self.upto
        else:
            await self._write(send, _RETRY)
            async for page in self.hub.backfill(self.sub.owner, self.sub.instance_id, last, self.upto):
                await self._write(send, b"".join(event.frame for event in page))
                last = page[-1].id
        if not self.follow:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        while True:
            try:
                event = await self.sub.next(self.hub.heartbeat)
            except StreamClosed as closed:
                body = orjson.dumps({"code": closed.code, "message": closed.message})
                await self._write(send, b"event: close\ndata: " + body + b"\n\n")
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if event is None:
                await self._write(send, _HEARTBEAT)
                continue
            frames = []
            for _ in range(_COALESCE):
                if last is None or event.id > last:
                    frames.append(event.frame)
                    last = event.id
                if not self.sub.queued:
                    break
                event = self.sub.pop()
            if frames:
                await self._write(send, b"".join(frames))


async def _disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _open(
    services: ServicesDep,
    owner: str,
    instance_id: str | None,
    after: str | None,
    last_event_id: str | None,
    follow: bool,
) -> EventStreamResponse:
    hub: EventHub = services.events
    resume = last_event_id if last_event_id is not None else after
    sub = hub.subscribe(owner, instance_id)
    try:
        upto = await sub.ready()
    except (TimeoutError, StreamClosed) as exc:
        hub.unsubscribe(sub)
        raise ApiError(
            503,
            "STREAM_UNAVAILABLE",
            "The event stream cannot read the store now; retry.",
            headers={"Retry-After": "2"},
        ) from exc
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return EventStreamResponse(hub, sub, int(resume) if resume is not None else None, upto, follow)


# What both streams answer and the Last-Event-ID header they read, as the document states them.
_STREAM_ROUTE: dict[str, Any] = {
    "status_code": 200,
    "response_class": EventStreamResponse,
    "responses": _STREAM_RESPONSES,
    "openapi_extra": _LAST_EVENT_ID_DOC,
}


@router.get(
    "/api/events/stream",
    summary="Status changes of every instance of the caller, as Server-Sent Events",
    **_STREAM_ROUTE,
)
async def stream_all(
    request: Request, owner: Owner, services: ServicesDep, after: After = None, follow: Follow = True
) -> Response:
    return await _open(services, owner, None, after, _last_event_id(request), follow)


@router.get(
    "/api/instances/{instance_id}/events/stream",
    summary="Status changes of one instance, as Server-Sent Events",
    **_STREAM_ROUTE,
)
async def stream_one(
    request: Request,
    instance_id: Annotated[str, Path(pattern=_INSTANCE_ID_PATTERN, description="An instanceId")],
    owner: Owner,
    services: ServicesDep,
    after: After = None,
    follow: Follow = True,
) -> Response:
    last_event_id = _last_event_id(request)
    await services.instances.get(owner, instance_id)  # another key's instance is not found either
    return await _open(services, owner, instance_id, after, last_event_id, follow)
