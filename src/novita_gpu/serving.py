"""Run an ASGI app on a real loopback socket, either as a task of the running loop or in a thread.

Used for the built-in emulator (same process as the service, reached over real HTTP) and by tests
that need a real server on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening socket whose connections send small responses at once (TCP_NODELAY)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; without it small responses wait for the peer's delayed ACK
    # (~40 ms on loopback), which caps each keep-alive connection at ~25 requests/s.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve_forever(app: Any, host: str, port: int) -> None:
    """Run `app` in this process until SIGINT/SIGTERM (graceful shutdown finishes in-flight work)."""
    sock = listening_socket(host, port)
    config = _config(app, host, int(sock.getsockname()[1]))
    config.timeout_graceful_shutdown = 10
    uvicorn.Server(config).run(sockets=[sock])


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # our logging configuration stays in charge
        # The stock asyncio loop serves ready connections first-in first-out; under saturation uvloop
        # left some requests waiting 10-20x the median (p99 0.75 s against 0.1 s, measured in bench/).
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        backlog=2048,
    )


class _EmbeddedServer(uvicorn.Server):
    """Leaves signals to the host process (the service, or pytest) instead of capturing them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class BackgroundServer:
    """A uvicorn server started with `start()` (in this loop) or `start_in_thread()`."""

    app: Any
    host: str = "127.0.0.1"
    port: int = 0
    _server: uvicorn.Server | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _sock: socket.socket | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> uvicorn.Server:
        self._sock = listening_socket(self.host, self.port)
        self.port = int(self._sock.getsockname()[1])
        self._server = _EmbeddedServer(_config(self.app, self.host, self.port))
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
