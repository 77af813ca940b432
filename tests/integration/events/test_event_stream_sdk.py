"""The SDK's event iterators, through a TCP proxy that can cut every connection: they resume by themselves
with the last id, so the caller sees each status change once, in order, across drops and server closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from novita_gpu_client import ApiError, AsyncClient, Client, Event
from tests.fixtures.live_service import FAST_RETRY, LiveService

STATUSES = ["creating", "starting", "running", "health_checking", "ready"]


class CuttableProxy:
    """Forwards loopback TCP connections to `port`; `cut()` aborts every open one (a dropped network)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def proxy(live: LiveService) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(int(live.url.rsplit(":", 1)[1]))
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_the_async_iterator_resumes_after_a_dropped_connection_and_a_server_close(
    live: LiveService, proxy: CuttableProxy
) -> None:
    hub = live.harness.services.events
    instance_id = (await live.harness.create())["instanceId"]
    seen: list[Event] = []
    async with AsyncClient(proxy.url, retry=FAST_RETRY) as client:
        events = client.iter_events(instance_id, after=0)
        seen.append(await anext(events))  # creating, from the store
        proxy.cut()  # the network drops: the next read fails, and the iterator reconnects
        await live.harness.until_status(instance_id, "running", "health_checking")
        seen.append(await asyncio.wait_for(anext(events), 10))
        hub._end_streams("SHUTDOWN", "The server is shutting down; reconnect.")  # as on SIGTERM
        reader = asyncio.ensure_future(_until_ready(events, seen))
        await live.harness.until_status(instance_id, "ready")
        await asyncio.wait_for(reader, 10)
        await events.aclose()
    assert [e.status for e in seen] == STATUSES
    assert [e.id for e in seen] == sorted({e.id for e in seen})
    assert all(e.instance_id == instance_id and e.type == f"instance.{e.status}" for e in seen)
    assert proxy.connections >= 2  # the cut forced a new connection (a server close may reuse one)


async def _until_ready(events: AsyncIterator[Event], seen: list[Event]) -> None:
    while seen[-1].status != "ready":
        seen.append(await anext(events))


async def test_the_blocking_iterator_reads_history_and_raises_what_a_retry_cannot_fix(live: LiveService) -> None:
    instance_id = (await live.harness.create())["instanceId"]
    await live.harness.until_status(instance_id, "ready")

    def history() -> list[str]:
        with Client(live.url, retry=FAST_RETRY) as client:
            return [e.status for e in client.iter_events(instance_id, after=0, follow=False)]

    assert await asyncio.to_thread(history) == STATUSES

    def unknown() -> None:
        with Client(live.url, retry=FAST_RETRY) as client:
            next(iter(client.iter_events("inst_00000000000000000000")))

    with pytest.raises(ApiError) as raised:
        await asyncio.to_thread(unknown)
    assert raised.value.status == 404 and raised.value.code == "INSTANCE_NOT_FOUND"
