"""The stream's source on PostgreSQL, where ids commit out of order: an event whose id is below one already
visible is never skipped while its transaction may still commit, and a rolled-back id does not hold the
stream back once its transaction has ended. Polls are driven by hand, so each step is exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from novita_gpu.events.stream import EventHub, Subscription
from novita_gpu.kit.db import table_of
from novita_gpu.kit.tables import InstanceEvent
from tests.harness import Harness

pytestmark = pytest.mark.postgres


@pytest.fixture
def harness(postgres_harness: Harness) -> Harness:
    return postgres_harness


async def insert_event(conn: AsyncConnection, instance_id: str) -> int:
    row = {
        "instance_id": instance_id,
        "created_at": datetime.now(UTC),
        "to_status": "running",
        "payload": {"event": "instance.running", "instanceId": instance_id, "status": "running"},
    }
    event_id = await conn.scalar(insert(table_of(InstanceEvent)).returning(table_of(InstanceEvent).c.id), row)
    assert event_id is not None
    return int(event_id)


def drained(sub: Subscription) -> list[int]:
    ids = []
    while sub.queued:
        ids.append(sub.pop().id)
    return ids


async def manual_hub(harness: Harness) -> tuple[EventHub, Subscription]:
    """A subscription on a hub whose poller does not run by itself: the test calls poll()."""
    hub = harness.services.events
    sub = hub.subscribe("default")
    assert hub._task is not None
    hub._task.cancel()
    await asyncio.gather(hub._task, return_exceptions=True)
    await hub.poll()
    assert await sub.ready(timeout=1) == hub.horizon
    return hub, sub


@dataclass
class OutOfOrder:
    """An event inserted in a transaction still open (`held`, id `earlier`), and a `later` one committed
    meanwhile by another connection; the hub is polled by hand."""

    instance_id: str
    hub: EventHub
    sub: Subscription
    held: AsyncConnection
    earlier: int
    later: int


@asynccontextmanager
async def out_of_order(harness: Harness) -> AsyncIterator[OutOfOrder]:
    """The test ends the held transaction (commit or rollback) inside the block."""
    instance_id = (await harness.create())["instanceId"]
    hub, sub = await manual_hub(harness)
    engine = harness.services.db.engine
    async with engine.connect() as held, engine.connect() as fast:
        await held.begin()
        earlier = await insert_event(held, instance_id)
        async with fast.begin():
            later = await insert_event(fast, instance_id)
        yield OutOfOrder(instance_id, hub, sub, held, earlier, later)


async def test_a_later_id_waits_for_an_earlier_one_still_in_its_transaction(harness: Harness) -> None:
    async with out_of_order(harness) as case:
        assert case.later > case.earlier
        for _ in range(3):  # visible, but held: the transaction holding `earlier` may still commit
            await case.hub.poll()
            assert drained(case.sub) == []
        await case.held.commit()
    await case.hub.poll()
    assert drained(case.sub) == [case.earlier, case.later]


async def test_a_rolled_back_id_holds_nothing_back_once_its_transaction_ended(harness: Harness) -> None:
    async with out_of_order(harness) as case:
        await case.hub.poll()
        assert drained(case.sub) == []
        await case.held.rollback()
    await case.hub.poll()  # the writer has ended: what is still missing never comes
    assert drained(case.sub) == [case.later]
    async with harness.services.db.engine.connect() as conn, conn.begin():
        after = await insert_event(conn, case.instance_id)
    await case.hub.poll()
    assert drained(case.sub) == [after]
