"""What one client connection may hold, bounded in the HTTP protocol itself (uvicorn bounds none of it).

- **Headers in time** (HEADER_READ_TIMEOUT_SECONDS): a new connection, and each request on a kept-alive
  one from its first byte, must deliver its complete request headers within the deadline, or the
  connection is closed (with a 408 when part of a request came). A client sending a header line every
  few seconds held its connection for as long as it liked.
- **A reader that reads** (SEND_TIMEOUT_SECONDS): when the client leaves the connection's socket full
  (asyncio pauses writing once its buffer is past the high-water mark, after the kernel's buffers
  filled), it has the deadline to start reading again, or the connection is reset, its buffers
  discarded at once (SO_LINGER 0: a plain close would wait for ever to flush to a peer that never
  reads). Whatever awaits a write on it (an event stream) then sees the client gone and lets go.
- **Connections at once** (MAX_CONNECTIONS): one over the cap is answered 503 and closed at once,
  before its request is read, so a flood of idle connections cannot take every descriptor.

`protocol_class(limits)` is the uvicorn `http=` protocol with these limits (kit/serving.py passes it).
A reverse proxy in front should bound the same things per client (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from novita_gpu.kit.settings import Settings

log = structlog.get_logger(__name__)

_LINGER_ZERO = struct.pack("ii", 1, 0)  # close() resets: unsent data is dropped, nothing lingers
_REFUSALS_LOGGED_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    header_read_timeout: float = 10.0
    send_timeout: float = 30.0
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_read_timeout=settings.header_read_timeout_seconds,
            send_timeout=settings.send_timeout_seconds,
            max_connections=settings.max_connections,
        )


def _answer(status: bytes, code: str, message: str, *extra: bytes) -> bytes:
    """A complete response that closes the connection, its body the API's error envelope."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    head = [b"HTTP/1.1 " + status, b"content-type: application/json", b"content-length: %d" % len(body)]
    return b"\r\n".join([*head, *extra, b"connection: close", b"", body])


_TOO_SLOW = _answer(
    b"408 Request Timeout", "REQUEST_TIMEOUT", "The request's headers did not arrive in time; the connection is closed."
)
_TOO_MANY = _answer(
    b"503 Service Unavailable",
    "TOO_MANY_CONNECTIONS",
    "The server has as many connections open as it takes (MAX_CONNECTIONS); retry shortly.",
    b"retry-after: 1",
)


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module's docstring (`limits`: set by
    `protocol_class`)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    _last_refusal_log: ClassVar[float] = 0.0
    _refused_since_log: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._in_headers = False  # a request has begun and its headers are not complete yet

    # -- connections at once, and a connection's first headers --------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse()
            return
        self._arm_header_timer()

    def _refuse(self) -> None:
        cls = type(self)
        cls._refused_since_log += 1
        now = time.monotonic()
        if now - cls._last_refusal_log >= _REFUSALS_LOGGED_EVERY_SECONDS:
            log.warning("connections_over_limit", refused=cls._refused_since_log, limit=self.limits.max_connections)
            cls._last_refusal_log, cls._refused_since_log = now, 0
        self.transport.write(_TOO_MANY)
        self.transport.close()

    # -- each request's headers -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        idle = self.cycle is None or self.cycle.response_complete
        if self._header_timer is None and (self._in_headers or idle) and not self.transport.is_closing():
            self._arm_header_timer()  # bytes of a request (or of nothing yet): its headers are now due

    def on_message_begin(self) -> None:
        self._in_headers = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_read_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        log.info("request_headers_timeout", seconds=self.limits.header_read_timeout, begun=self._in_headers)
        if self._in_headers:
            self.transport.write(_TOO_SLOW)
        self.transport.close()

    # -- a client that stops reading ----------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._client_not_reading)

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().resume_writing()

    def _client_not_reading(self) -> None:
        self._send_timer = None
        if self.transport.is_closing() and self.transport.get_write_buffer_size() == 0:
            return
        path = self.scope.get("path") if self.scope else None
        log.warning("client_not_reading", path=path, seconds=self.limits.send_timeout)
        reset(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)


def reset(transport: asyncio.BaseTransport) -> None:
    """Close the connection now, dropping what is still queued for it (a TCP reset, not a FIN after a
    flush that would never come)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()  # type: ignore[attr-defined]


def protocol_class(limits: ConnectionLimits) -> type[BoundedHttpProtocol]:
    """The protocol class uvicorn builds each connection with, bound to `limits`."""
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,), {"limits": limits})
