"""The event stream over real HTTP (httpx streaming against the service on a loopback port): one SSE event
per status change with the webhook's body, resume by Last-Event-ID or ?after= without loss or repeat (also
after a restart), the per-key limit, a slow reader closed with its queue dropped, heartbeats, owners."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import insert, select

from novita_gpu.kit.db import table_of
from novita_gpu.kit.tables import InstanceEvent, WebhookDelivery
from novita_gpu.sdk.events import Message, SseDecoder
from tests.fixtures.live_service import LiveService, live_service

KEY_A = "stream-key-a-0123456789abcdef"
KEY_B = "stream-key-b-0123456789abcdef"
DEADLINE = 10.0


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


class Stream:
    """One open stream: its raw lines, and its messages as the SDK's decoder reads them. `positions` are
    the id-only messages (no event: where the stream started), which `message()` passes over."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.decoder = SseDecoder()
        self.comments: list[str] = []
        self.positions: list[str] = []

    async def message(self, timeout: float = DEADLINE) -> Message:
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line.startswith(":"):
                    self.comments.append(line)
                message = self.decoder.feed(line)
                if message is not None and not message.event and message.id is not None:
                    self.positions.append(message.id)
                elif message is not None:
                    return message
        raise EOFError("the stream ended")

    async def position(self, timeout: float = DEADLINE) -> str:
        """The id-only message a stream opened without a cursor starts with (read before any event)."""
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                message = self.decoder.feed(line)
                if message is not None:
                    assert (message.event, message.data) == ("", ""), message
                    assert message.id is not None
                    return message.id
        raise EOFError("the stream ended")

    async def events_until(self, instance_id: str, status: str) -> list[Message]:
        """Messages until `instance_id` reports `status` (included)."""
        seen = []
        while True:
            message = await self.message()
            seen.append(message)
            data = orjson.loads(message.data)
            if data.get("instanceId") == instance_id and data.get("status") == status:
                return seen

    async def rest(self) -> list[Message]:
        """Every message until the server ends the response."""
        seen = []
        with contextlib.suppress(EOFError):
            while True:
                seen.append(await self.message())
        return seen


@contextlib.asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, path: str = "/api/events/stream", **options: Any
) -> AsyncIterator[Stream]:
    async with http.stream("GET", path, **options) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


async def until(check: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def subscribed(live: LiveService, count: int) -> None:
    """The server has registered `count` streams (so what happens next is theirs to see)."""
    hub = live.harness.services.events
    await until(lambda: hub.subscribers == count and hub._settled, f"{count} subscribers")


async def store_ids(live: LiveService, instance_id: str | None = None) -> list[int]:
    query = select(InstanceEvent.id).order_by(InstanceEvent.id)
    if instance_id is not None:
        query = query.where(InstanceEvent.instance_id == instance_id)
    return [row[0] for row in await live.harness.services.db.fetch(query)]


async def test_each_status_change_is_one_event_with_the_webhook_body(tmp_path: Path, receiver_url: str) -> None:
    async with live_service(tmp_path) as live, httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http:
        async with open_stream(http) as stream:
            await subscribed(live, 1)
            created = await live.harness.create(webhookUrl=receiver_url)
            instance_id = created["instanceId"]
            reader = asyncio.ensure_future(stream.events_until(instance_id, "ready"))
            await live.harness.until_status(instance_id, "ready")
            messages = await reader
        assert [m.event for m in messages] == [
            f"instance.{s}" for s in ("creating", "starting", "running", "health_checking", "ready")
        ]
        assert [int(m.id or 0) for m in messages] == await store_ids(live, instance_id)
        # The same bytes' meaning as the webhook deliveries written with each change.
        deliveries = await live.harness.services.db.fetch(
            select(WebhookDelivery.event_id, WebhookDelivery.payload).order_by(WebhookDelivery.event_id)
        )
        webhook_bodies = {event_id: payload for event_id, payload in deliveries}
        for message in messages:
            assert orjson.loads(message.data) == webhook_bodies[int(message.id or 0)]
        ready = orjson.loads(messages[-1].data)
        assert ready["previousStatus"] == "health_checking"
        assert ready["data"]["connectionDetails"]["ports"]


async def test_resume_with_last_event_id_or_after_loses_and_repeats_nothing(live: LiveService) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http:
        created = await live.harness.create()
        instance_id = created["instanceId"]
        async with open_stream(http, params={"after": "0"}) as stream:
            first = await stream.message()  # `creating`, from the store
        assert first.event == "instance.creating"
        # Changes while nobody listens.
        await live.harness.until_status(instance_id, "running", "health_checking")
        async with open_stream(http, headers={"Last-Event-ID": first.id or ""}) as stream:
            second = [await stream.message()]  # `starting`, from the store
            reader = asyncio.ensure_future(stream.events_until(instance_id, "ready"))
            await live.harness.until_status(instance_id, "ready")
            third = await reader
        # The header wins over a stale ?after= (EventSource keeps the URL it was opened with).
        async with open_stream(
            http, params={"after": "0", "follow": "false"}, headers={"Last-Event-ID": third[-1].id or ""}
        ) as stream:
            assert await stream.rest() == []
        ids = [int(m.id or 0) for m in [first, *second, *third]]
        assert ids == await store_ids(live, instance_id)


async def test_a_stream_opened_without_a_cursor_starts_with_its_position(live: LiveService) -> None:
    """`id: <newest event id>` and nothing else: by the SSE rules no event, but the client's last event id,
    so one that reconnects before it has received any event resumes from where it started."""
    async with httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http:
        instance_id = (await live.harness.create())["instanceId"]
        [newest] = await store_ids(live)
        async with open_stream(http) as stream:
            assert [await anext(stream.lines) for _ in range(4)] == ["retry: 2000", "", f"id: {newest}", ""]
        async with open_stream(http, f"/api/instances/{instance_id}/events/stream") as stream:
            position = await stream.position()
        assert position == str(newest)
        # Changes while nobody listens; a resume from the position gets them all, and only them.
        await live.harness.until_status(instance_id, "ready")
        async with open_stream(http, params={"follow": "false"}, headers={"Last-Event-ID": position}) as stream:
            resumed = await stream.rest()
        assert [int(m.id or 0) for m in resumed] == (await store_ids(live))[1:]
        # A stream with a cursor has one: it gets no position.
        async with open_stream(http, params={"after": "0", "follow": "false"}) as stream:
            replayed = await stream.rest()
        assert stream.positions == [] and [int(m.id or 0) for m in replayed] == await store_ids(live)


async def test_a_restarted_server_resumes_from_the_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}"
    async with live_service(tmp_path / "one", database_url=url) as live:
        instance_id = (await live.harness.create())["instanceId"]
        async with (
            httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http,
            open_stream(http, params={"after": "0"}) as stream,
        ):
            seen = [await stream.message()]
        await live.harness.until_status(instance_id, "ready")
    async with live_service(tmp_path / "two", database_url=url) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http:
            path = f"/api/instances/{instance_id}/events/stream"
            async with open_stream(http, path, params={"follow": "false"}, headers={"Last-Event-ID": seen[0].id}) as s:
                seen += await s.rest()
        assert [int(m.id or 0) for m in seen] == await store_ids(live, instance_id)
        assert seen[-1].event == "instance.ready"


async def test_each_key_sees_its_own_instances_and_another_keys_instance_is_not_found(tmp_path: Path) -> None:
    async with (
        live_service(tmp_path, api_keys=f"{KEY_A},{KEY_B}") as live,
        httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http,
    ):
        mine = (await http.post("/api/instances", json=body("mine"), headers=auth(KEY_A))).json()["instanceId"]
        theirs = (await http.post("/api/instances", json=body("theirs"), headers=auth(KEY_B))).json()["instanceId"]
        async with open_stream(http, params={"after": "0", "follow": "false"}, headers=auth(KEY_A)) as stream:
            assert {orjson.loads(m.data)["instanceId"] for m in await stream.rest()} == {mine}
        for path, key in [
            (f"/api/instances/{theirs}/events/stream", KEY_A),
            ("/api/instances/inst_00000000000000000000/events/stream", KEY_A),
        ]:
            response = await http.get(path, headers=auth(key))
            assert response.status_code == 404
            error = response.json()["error"]
            assert error["code"] == "INSTANCE_NOT_FOUND" and error["requestId"]
        assert (await http.get("/api/events/stream")).status_code == 401
        bad = await http.get("/api/events/stream", headers={**auth(KEY_A), "Last-Event-ID": "abc"})
        assert bad.status_code == 400 and bad.json()["error"]["code"]


def body(name: str) -> dict[str, str]:
    return {"name": name, "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}


async def test_a_key_has_a_limited_number_of_streams_with_a_clear_429(tmp_path: Path) -> None:
    async with (
        live_service(tmp_path, api_keys=f"{KEY_A},{KEY_B}", event_streams_per_key=2) as live,
        httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http,
    ):
        async with open_stream(http, headers=auth(KEY_A)), open_stream(http, headers=auth(KEY_A)):
            refused = await http.get("/api/events/stream", headers=auth(KEY_A))
            assert refused.status_code == 429
            assert refused.headers["retry-after"]
            error = refused.json()["error"]
            assert error["code"] == "TOO_MANY_STREAMS" and "2 event streams" in error["message"]
            async with open_stream(http, headers=auth(KEY_B)):  # another key has its own share
                pass
        # Closed streams give their slots back.
        await until(lambda: live.harness.services.events.subscribers == 0, "streams to close")
        async with open_stream(http, headers=auth(KEY_A)):
            pass


async def test_heartbeats_keep_an_idle_stream_open(tmp_path: Path) -> None:
    async with (
        live_service(tmp_path, event_stream_heartbeat_seconds=0.05) as live,
        httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http,
        http.stream("GET", "/api/events/stream") as response,
    ):
        lines = response.aiter_lines()
        heartbeats = 0
        async with asyncio.timeout(DEADLINE):
            async for line in lines:
                heartbeats += line == ": keep-alive"
                if heartbeats == 3:
                    break


async def test_a_slow_reader_is_closed_with_a_reason_and_resumes_without_loss(tmp_path: Path) -> None:
    """A reader that stops reading: the server's queue for it stays within EVENT_STREAM_BUFFER, the stream is
    closed with SLOW_READER, and a resume with its last id gets the rest from the store."""
    events = 3000  # of ~4 KB each: more than the kernel buffers of both ends hold (up to 4 MB each)
    async with live_service(tmp_path, event_stream_buffer=64) as live:
        instance_id = (await live.harness.create())["instanceId"]
        hub = live.harness.services.events
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connecting: a small window
        host, port = live.url.removeprefix("http://").split(":")
        await asyncio.to_thread(sock.connect, (host, int(port)))
        sock.sendall(f"GET /api/events/stream HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await subscribed(live, 1)
        [sub] = list(hub._subs)
        now = datetime.now(UTC)
        payload = {"event": "instance.running", "instanceId": instance_id, "name": "x" * 4000, "status": "running"}
        async with live.harness.services.db.write() as session:
            await session.execute(
                insert(table_of(InstanceEvent)),
                [
                    {"instance_id": instance_id, "created_at": now, "to_status": "running", "payload": payload}
                    for _ in range(events)
                ],
            )
        live.harness.services.instances.changes.pulse(instance_id)
        high_water = 0

        def closed() -> bool:
            nonlocal high_water
            high_water = max(high_water, sub.queued)
            return sub.closed is not None

        await until(closed, "the slow reader to be closed", timeout=30)
        assert sub.closed is not None and sub.closed.code == "SLOW_READER"
        assert high_water <= 64 and sub.queued == 0
        # The reader wakes up and reads what was sent, then the reason, then the end.
        raw = await asyncio.to_thread(read_all, sock)
        head, _, chunked = raw.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        decoder = SseDecoder()
        received = [m for line in dechunk(chunked).decode().split("\n") if (m := decoder.feed(line)) is not None]
        assert received[-1].event == "close" and "SLOW_READER" in received[-1].data
        got = [int(m.id or 0) for m in received[:-1]]
        assert got and got == sorted(set(got)) and len(got) < events + 1
        # follow=false ends where this process had read the store when the stream opened; once it has read
        # the whole burst, the resume brings every event of it.
        newest = max(await store_ids(live))
        await until(lambda: hub.horizon is not None and hub.horizon >= newest, "the stream to read the burst")
        async with (
            httpx.AsyncClient(base_url=live.url, timeout=DEADLINE) as http,
            open_stream(http, params={"follow": "false"}, headers={"Last-Event-ID": str(got[-1])}) as stream,
        ):
            rest = [int(m.id or 0) for m in await stream.rest()]
        expected = [i for i in await store_ids(live) if i > got[0]]
        assert got[1:] + rest == expected


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(DEADLINE)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        if chunks[-1].endswith(b"0\r\n\r\n"):
            break
    sock.close()
    return b"".join(chunks)


def dechunk(data: bytes) -> bytes:
    out, rest = [], data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)
