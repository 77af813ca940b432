"""Run an ASGI app on a real loopback socket, either as a task of the running loop or in a thread.

Used for the built-in emulator (same process as the service, reached over real HTTP) and by tests
that need a real server on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
import uvicorn

from novita_gpu.kit.connections import ConnectionLimits, protocol_class

log = structlog.get_logger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class CannotListen(OSError):
    """The address cannot be bound (in use, not on this machine, a privileged port...): the message says
    which address and why, in one line."""


class StartupFailed(Exception):
    """The app's start-up (its lifespan) raised; `__cause__` is what it raised."""


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` but not listening yet: a port in use is found before anything else
    starts, and until `serve_forever` listens, clients are refused at once rather than left waiting."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it small responses wait for the peer's delayed ACK,
        # which caps each keep-alive connection at a few dozen requests a second.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _listen(sock: socket.socket) -> socket.socket:
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening socket whose connections send small responses at once (TCP_NODELAY)."""
    return _listen(bound_socket(host, port))


def serve_forever(
    app: Any,
    sock: socket.socket,
    on_started: Callable[[], None] | None = None,
    limits: ConnectionLimits | None = None,
) -> None:
    """Run `app` on the bound `sock` until SIGINT/SIGTERM (graceful shutdown finishes in-flight work).
    `on_started` runs once the app has started and the socket listens; `limits` bound each connection
    (kit/connections.py). If the app's start-up fails this raises `StartupFailed` (its cause's traceback
    goes to the log at debug, not uvicorn's at error)."""
    guarded = _StartupGuard(app)
    host, port = sock.getsockname()[:2]
    config = _config(guarded, host, port, limits)
    config.timeout_graceful_shutdown = 10
    server = _Server(config, on_started)
    try:
        server.run(sockets=[_listen(sock)])
    except SystemExit:  # uvicorn's exit after a failed start-up
        if guarded.error is None:
            raise
    if guarded.error is not None:
        raise StartupFailed(str(guarded.error)) from guarded.error


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()


class _StartupGuard:
    """Keeps what the app's start-up raised for `serve_forever` to report in one line: uvicorn would log
    its traceback as an error and exit, leaving the operator to find the cause in it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: Exception | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        started = False

        async def relay(message: Any) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                started = True
            elif message["type"] == "lifespan.startup.failed":
                message = {"type": message["type"], "message": ""}  # the traceback: logged below, at debug
            await send(message)

        try:
            await self.app(scope, receive, relay)
        except Exception as exc:
            if started:
                raise  # a failed shutdown: uvicorn reports it
            self.error = exc
            log.debug("startup_failed", exc_info=exc)


def _config(app: Any, host: str, port: int, limits: ConnectionLimits | None = None) -> uvicorn.Config:
    """uvicorn's configuration; with `limits`, its HTTP protocol is kit/connections.py's (else its own)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # our logging configuration stays in charge
        # The stock asyncio loop serves ready connections first-in first-out; under saturation uvloop
        # left some requests waiting many times the median (docs/performance.md).
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        backlog=2048,
        http="auto" if limits is None else protocol_class(limits),
    )


class _EmbeddedServer(uvicorn.Server):
    """Leaves signals to the host process (the service, or pytest) instead of capturing them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class BackgroundServer:
    """A uvicorn server started with `start()` (in this loop) or `start_in_thread()`; `limits` bound each
    connection as the service's own server does (kit/connections.py), none when not given."""

    app: Any
    host: str = "127.0.0.1"
    port: int = 0
    limits: ConnectionLimits | None = None
    _server: uvicorn.Server | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _sock: socket.socket | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """The connections open now (tests: a connection the server dropped is gone from here)."""
        return 0 if self._server is None else len(self._server.server_state.connections)

    def _prepare(self) -> uvicorn.Server:
        self._sock = listening_socket(self.host, self.port)
        self.port = int(self._sock.getsockname()[1])
        self._server = _EmbeddedServer(_config(self.app, self.host, self.port, self.limits))
        return self._server

    async def start(self) -> None:
        server = self._prepare()
        assert self._sock is not None
        self._task = asyncio.create_task(server.serve(sockets=[self._sock]))
        while not server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._close_socket()

    def start_in_thread(self) -> None:
        server = self._prepare()
        sock = self._sock
        assert sock is not None
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True, name=f"server:{self.port}"
        )
        self._thread.start()
        deadline = threading.Event()
        for _ in range(1000):
            if server.started:
                return
            deadline.wait(0.01)
        raise RuntimeError("server did not start within 10 s")

    def stop_thread(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
