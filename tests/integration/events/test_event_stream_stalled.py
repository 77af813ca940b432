"""Readers that never read, against the service's real server on a loopback port: raw sockets that send the
request and read nothing. Once the socket stays full past SEND_TIMEOUT_SECONDS the server resets the
connection and the stream's slot goes back to its key, so stalled readers cannot hold a key's
EVENT_STREAMS_PER_KEY for ever (they held them, and their sockets, for minutes)."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import insert
from starlette.types import Message

from novita_gpu.events.router import EventStreamResponse
from novita_gpu.kit.db import table_of
from novita_gpu.kit.tables import InstanceEvent
from novita_gpu.web.auth import owner_id
from tests.fixtures.live_service import LiveService, live_service
from tests.harness import Harness
from tests.integration.events.test_event_stream import DEADLINE, auth, subscribed, until

KEY = "stall-key-0123456789abcdef"
SEND_TIMEOUT = 1.0
EVENTS = 3000  # of ~4 KB each: more than the kernel buffers of both ends hold


async def stalled_reader(live: LiveService) -> socket.socket:
    """A client that opens a stream and never reads a byte (a tiny receive window, as a stuck one has)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connecting: a small window
    host, port = live.url.removeprefix("http://").split(":")
    await asyncio.to_thread(sock.connect, (host, int(port)))
    request = f"GET /api/events/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


async def burst(live: LiveService, instance_id: str) -> None:
    """EVENTS large events at once: far more than a reader that does not read can take."""
    now = datetime.now(UTC)
    payload = {"event": "instance.running", "instanceId": instance_id, "name": "x" * 4000, "status": "running"}
    async with live.harness.services.db.write() as session:
        await session.execute(
            insert(table_of(InstanceEvent)),
            [
                {"instance_id": instance_id, "created_at": now, "to_status": "running", "payload": payload}
                for _ in range(EVENTS)
            ],
        )
    live.harness.services.instances.changes.pulse(instance_id)


def reset_or_closed(sock: socket.socket) -> bool:
    """Whether the server ended the connection: reading (now, at last) reaches a reset or the end."""
    sock.settimeout(DEADLINE)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()
    return True


async def test_readers_that_never_read_are_cut_at_the_send_deadline_and_free_their_slots(tmp_path: Path) -> None:
    async with live_service(tmp_path, api_key=KEY, event_streams_per_key=2, send_timeout_seconds=SEND_TIMEOUT) as live:
        assert live.server is not None
        hub = live.harness.services.events
        live.harness.http.headers["Authorization"] = f"Bearer {KEY}"  # (the harness's client is in-process)
        instance_id = (await live.harness.create())["instanceId"]
        readers = [await stalled_reader(live), await stalled_reader(live)]
        await subscribed(live, 2)
        assert hub.streams_of(owner_id(KEY)) == 2 and live.server.connections == 2
        async with httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http:
            full = await http.get("/api/events/stream", headers=auth(KEY))
        assert full.status_code == 429 and full.json()["error"]["code"] == "TOO_MANY_STREAMS"

        await burst(live, instance_id)
        started = time.monotonic()
        # Both sockets fill, then stay full: past the deadline each connection is reset and its slot freed,
        # although neither client has read anything.
        await until(
            lambda: hub.streams_of(owner_id(KEY)) == 0 and live.server is not None and live.server.connections == 0,
            "the stalled readers to be cut",
            timeout=DEADLINE + 20,
        )
        held = time.monotonic() - started
        assert held < 20, f"stalled readers held their slots {held:.1f} s"
        for sock in readers:
            assert await asyncio.to_thread(reset_or_closed, sock)

        # The key has its slots back.
        async with (
            httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http,
            http.stream("GET", "/api/events/stream", params={"follow": "false"}, headers=auth(KEY)) as again,
        ):
            assert again.status_code == 200


async def test_under_any_server_a_write_that_never_ends_ends_the_stream_and_frees_its_slot(tmp_path: Path) -> None:
    """The stream bounds each write itself (SEND_TIMEOUT_SECONDS), whatever server runs it: here a send that
    never returns, as a server's does while the client's socket stays full."""
    async with Harness(tmp_path, send_timeout_seconds=0.2) as harness:
        hub = harness.services.events
        sub = hub.subscribe("default")
        response = EventStreamResponse(hub, sub, None, await sub.ready(), True)
        writes = 0

        async def send(message: Message) -> None:
            nonlocal writes
            if message["type"] == "http.response.body":
                writes += 1
                await asyncio.Event().wait()  # the client reads nothing: the write never completes

        async def receive() -> Message:
            await asyncio.Event().wait()  # and never hangs up
            raise AssertionError

        async with asyncio.timeout(DEADLINE):
            await response({"type": "http"}, receive, send)
        assert writes == 1 and hub.streams_of("default") == 0
