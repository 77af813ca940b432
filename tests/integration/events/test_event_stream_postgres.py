"""The stream's source on PostgreSQL, where ids commit out of order: an event whose id is below one already
visible is never skipped while its transaction may still commit, and a rolled-back id does not hold the
stream back once its transaction has ended. Polls are driven by hand, so each step is exact."""

from __future__ import annotations

import asyncio
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


async def test_a_later_id_waits_for_an_earlier_one_still_in_its_transaction(harness: Harness) -> None:
    instance_id = (await harness.create())["instanceId"]
    hub, sub = await manual_hub(harness)
    engine = harness.services.db.engine
    async with engine.connect() as slow, engine.connect() as fast:
        await slow.begin()
        earlier = await insert_event(slow, instance_id)
        async with fast.begin():
            later = await insert_event(fast, instance_id)
        assert later > earlier
        for _ in range(3):  # visible, but held: the transaction holding `earlier` may still commit
            await hub.poll()
            assert drained(sub) == []
        await slow.commit()
    await hub.poll()
    assert drained(sub) == [earlier, later]


async def test_a_rolled_back_id_holds_nothing_back_once_its_transaction_ended(harness: Harness) -> None:
    instance_id = (await harness.create())["instanceId"]
    hub, sub = await manual_hub(harness)
    engine = harness.services.db.engine
    async with engine.connect() as doomed, engine.connect() as fast:
        await doomed.begin()
        await insert_event(doomed, instance_id)
        async with fast.begin():
            later = await insert_event(fast, instance_id)
        await hub.poll()
        assert drained(sub) == []
        await doomed.rollback()
    await hub.poll()  # the writer has ended: what is still missing never comes
    assert drained(sub) == [later]
    async with engine.connect() as conn, conn.begin():
        after = await insert_event(conn, instance_id)
    await hub.poll()
    assert drained(sub) == [after]
