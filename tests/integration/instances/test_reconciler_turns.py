"""On PostgreSQL a tick's own lease writes (claims, renewals) do not wait for a worker's turn behind the rows'
writes. In a busy replica a hundred rows in flight queue for the few turns, and the tick's claims
and renewals queued with them: ticks 10-30 s apart, leases lapsing under rows still in flight, creates
waiting for their claim, Novita listed every 20-30 s. Every worker turn is held here while the tick runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from novita_gpu.kit.db import WORKER_WRITES_PER_PASS
from novita_gpu.kit.tables import Instance
from tests.harness import Harness

pytestmark = pytest.mark.postgres

# Only a guard, so that a tick stuck behind the turns fails rather than hangs: a passing tick takes well under it.
_STUCK_SECONDS = 30


@pytest.fixture
def harness(postgres_harness: Harness) -> Harness:
    return postgres_harness


@contextlib.asynccontextmanager
async def every_turn_taken(harness: Harness) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as turns:
        for _ in range(WORKER_WRITES_PER_PASS):
            await turns.enter_async_context(harness.services.db.worker_write())
        yield


async def test_a_tick_claims_its_rows_while_every_worker_turn_is_taken(harness: Harness) -> None:
    created = await harness.create()
    async with every_turn_taken(harness):
        result = await asyncio.wait_for(harness.services.reconciler.tick(), _STUCK_SECONDS)
        assert result.claimed == 1
        async with harness.services.db.read() as session:
            owner = await session.scalar(select(Instance.lease_owner).where(Instance.id == created["instanceId"]))
        assert owner == harness.services.reconciler.worker_id


async def test_a_tick_renews_the_leases_of_rows_in_flight_while_every_worker_turn_is_taken(harness: Harness) -> None:
    created = await harness.create()
    reconciler = harness.services.reconciler
    async with every_turn_taken(harness):
        await asyncio.wait_for(reconciler.tick(), _STUCK_SECONDS)  # the row's create waits for a turn: in flight
        assert reconciler.busy_rows() == {created["instanceId"]}
        async with harness.services.db.read() as session:
            before = await session.scalar(select(Instance.lease_expires_at).where(Instance.id == created["instanceId"]))
        harness.clock.advance(5)
        await asyncio.wait_for(reconciler.tick(), _STUCK_SECONDS)
        async with harness.services.db.read() as session:
            after = await session.scalar(select(Instance.lease_expires_at).where(Instance.id == created["instanceId"]))
        assert before is not None and after is not None and after > before
