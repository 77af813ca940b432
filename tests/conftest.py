from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from novita_gpu.kit.serving import BackgroundServer
from tests.fixtures.databases import fresh_database
from tests.harness import Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(tmp_path).start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def postgres_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """The harness on a fresh PostgreSQL database (tests marked `postgres`)."""
    async with fresh_database("postgres", tmp_path) as url:
        h = await Harness(tmp_path, database_url=url).start()
        try:
            yield h
        finally:
            await h.stop()


@pytest.fixture
async def receiver_url() -> AsyncIterator[str]:
    """A webhook receiver on loopback that answers every POST with 200."""

    async def webhook(_: Request) -> Response:
        return Response("OK")

    server = BackgroundServer(Starlette(routes=[Route("/webhook", webhook, methods=["POST"])]))
    await server.start()
    yield f"{server.url}/webhook"
    await server.stop()
