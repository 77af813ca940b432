"""Connection limits (kit/connections.py) on a real uvicorn server over loopback, with raw sockets as the
clients: request headers must arrive within HEADER_READ_TIMEOUT_SECONDS, a client that leaves its socket
full past SEND_TIMEOUT_SECONDS is reset, and MAX_CONNECTIONS caps the connections open at once; a
normal client notices none of it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from novita_gpu.kit.connections import ConnectionLimits
from novita_gpu.kit.serving import BackgroundServer

DEADLINE = 10.0
HEADER_TIMEOUT = 0.5
REQUEST = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """`/flood` streams 128 MB (far more than the socket buffers of both ends hold); anything else answers
    `hello`."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/flood":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        chunk = b"x" * 65536
        for _ in range(2048):  # (once the client is gone each send returns at once)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


@asynccontextmanager
async def serving(limits: ConnectionLimits) -> AsyncIterator[BackgroundServer]:
    server = BackgroundServer(app, limits=limits)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    async with serving(ConnectionLimits(header_read_timeout=HEADER_TIMEOUT, send_timeout=1.0)) as running:
        yield running


def connect(server: BackgroundServer, *, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(DEADLINE)
    sock.connect(("127.0.0.1", server.port))
    return sock


def until_closed(sock: socket.socket, timeout: float = DEADLINE) -> bytes:
    """Everything the server sends until it ends the connection (fails if it has not within `timeout`)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def nothing_within(sock: socket.socket, seconds: float) -> bool:
    """The connection stays open and silent for `seconds` (the server neither answers nor closes it)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b"x"  # any byte, or b"" (closed), is something
    except TimeoutError:
        return True


def answer(sock: socket.socket) -> bytes:
    """One `hello` response on a kept-alive connection."""
    received = b""
    while not received.endswith(b"hello"):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


async def until(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def slow_headers(server: BackgroundServer) -> tuple[bytes, float]:
    """A client that sends its request line, then one header line every 100 ms and never the end:
    what it got, and how long after its first byte the server ended the connection."""
    sock = connect(server)
    sock.sendall(b"GET /hello HTTP/1.1\r\n")
    began = time.monotonic()
    received = b""
    sock.settimeout(0.1)  # the pace of the header lines, and how soon an answer or the end is seen
    try:
        for line in range(1000):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b"X-Slow-%d: 1\r\n" % line)
                continue
            received += chunk
            if not chunk:
                return received, time.monotonic() - began
    except (ConnectionResetError, BrokenPipeError):
        return received, time.monotonic() - began
    finally:
        sock.close()
    raise AssertionError("the server kept a connection whose headers never ended")


async def test_headers_that_never_end_are_cut_at_the_deadline_with_a_408(server: BackgroundServer) -> None:
    received, after = await asyncio.to_thread(slow_headers, server)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b'"code":"REQUEST_TIMEOUT"' in received and b"connection: close" in received
    assert HEADER_TIMEOUT * 0.8 <= after < HEADER_TIMEOUT + 2, after
    await until(lambda: server.connections == 0, "the connection to be gone")


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(server: BackgroundServer) -> None:
    sock = await asyncio.to_thread(connect, server)
    opened = time.monotonic()
    assert await asyncio.to_thread(until_closed, sock) == b""  # closed without an answer: nothing was asked
    assert time.monotonic() - opened < HEADER_TIMEOUT + 2
    sock.close()


async def test_a_normal_client_is_unaffected(server: BackgroundServer) -> None:
    def client() -> None:
        with connect(server) as sock:
            sock.sendall(REQUEST)
            assert answer(sock).startswith(b"HTTP/1.1 200 ")
            # Idle between requests for twice the header deadline: that is keep-alive's to judge, not it.
            assert nothing_within(sock, 2 * HEADER_TIMEOUT)
            sock.sendall(REQUEST)
            assert answer(sock).startswith(b"HTTP/1.1 200 ")
            # Headers in two parts, within the deadline.
            sock.sendall(REQUEST[:20])
            assert nothing_within(sock, HEADER_TIMEOUT / 3)
            sock.sendall(REQUEST[20:])
            assert answer(sock).startswith(b"HTTP/1.1 200 ")

    await asyncio.to_thread(client)


async def test_a_kept_alive_connections_next_request_has_the_deadline_from_its_first_byte(
    server: BackgroundServer,
) -> None:
    def client() -> bytes:
        with connect(server) as sock:
            sock.sendall(REQUEST)
            assert answer(sock).startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n")  # and never the blank line
            return until_closed(sock, timeout=HEADER_TIMEOUT + 2)

    assert (await asyncio.to_thread(client)).startswith(b"HTTP/1.1 408 ")


async def test_a_client_that_stops_reading_is_reset_at_the_send_deadline(server: BackgroundServer) -> None:
    sock = await asyncio.to_thread(connect, server, receive_buffer=2048)
    sock.sendall(b"GET /flood HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await until(lambda: server.connections == 1, "the connection to be served")
    started = time.monotonic()
    # The server fills both ends' buffers, then its writes wait; one second later it gives up on the client.
    await until(lambda: server.connections == 0, "the stalled connection to be reset", timeout=DEADLINE + 10)
    assert time.monotonic() - started < 10
    with pytest.raises(ConnectionResetError):
        await asyncio.to_thread(lambda: [sock.recv(65536) for _ in range(100_000)])
    sock.close()


async def test_connections_over_the_cap_are_refused_at_once_with_a_503() -> None:
    async with serving(ConnectionLimits(header_read_timeout=DEADLINE, max_connections=3)) as server:
        held = [await asyncio.to_thread(connect, server) for _ in range(3)]
        await until(lambda: server.connections == 3, "three connections")
        over = await asyncio.to_thread(connect, server)
        refused = await asyncio.to_thread(until_closed, over, 2.0)
        assert refused.startswith(b"HTTP/1.1 503 ") and b"TOO_MANY_CONNECTIONS" in refused
        assert b"retry-after: 1" in refused
        held.pop().close()
        await until(lambda: server.connections == 2, "a connection to be given back")

        def served() -> bytes:
            with connect(server) as sock:
                sock.sendall(REQUEST)
                return answer(sock)

        assert (await asyncio.to_thread(served)).startswith(b"HTTP/1.1 200 ")
        for sock in held:
            sock.close()
