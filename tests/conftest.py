from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.novita_client import Observed, Sleeps
from tests.fixtures.receivers import Receiver
from tests.harness import Harness, harness_on


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness(tmp_path) as h:
        yield h


@pytest.fixture
async def postgres_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """The harness on a fresh PostgreSQL database (tests marked `postgres`)."""
    async with harness_on("postgres", tmp_path) as h:
        yield h


@pytest.fixture(params=["sqlite", "postgres"])
async def store_harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The harness on a fresh database of each store: the test runs once on SQLite, once on PostgreSQL."""
    async with harness_on(request.param, tmp_path) as h:
        yield h


@pytest.fixture
def sleeps() -> Sleeps:
    """An injected sleep for a NovitaClient (`sleep=sleeps`): records the waits, returns at once."""
    return Sleeps()


@pytest.fixture
def observed() -> Observed:
    """An observer for a NovitaClient (`observer=observed`): records each attempt's endpoint and outcome."""
    return Observed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on loopback that answers every POST with 200 and keeps what it was sent."""
    async with Receiver() as r:
        yield r


@pytest.fixture
async def receiver_url() -> AsyncIterator[str]:
    """A webhook receiver on loopback that answers every POST with 200: where to send what must be accepted."""
    async with Receiver() as r:
        yield r.url
