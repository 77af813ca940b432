"""The same store code on SQLite and PostgreSQL: lifecycle, uniqueness, idempotency, leases, concurrency."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import Connection

from novita_gpu.instances.guarded_write import reattach_if_current
from novita_gpu.instances.reconciler import Reconciler
from novita_gpu.kit.migrations import alembic_config
from novita_gpu.kit.tables import Instance
from tests.harness import SEED_BODY, Harness


async def test_lifecycle_to_ready_and_stopped(store_harness: Harness) -> None:
    created = await store_harness.create()
    ready = await store_harness.until_status(created["instanceId"], "ready")
    assert ready["connectionDetails"]["ports"]
    await store_harness.http.post(f"/api/instances/{created['instanceId']}/stop")
    stopped = await store_harness.until_status(created["instanceId"], "stopped")
    assert stopped["stoppedAt"] and stopped["createdAt"].endswith("Z")
    assert len(store_harness.upstream_instances()) == 1


async def test_concurrent_creates_are_not_lost_and_names_stay_unique(store_harness: Harness) -> None:
    bodies = [{**SEED_BODY, "name": f"n-{i % 10}"} for i in range(30)]
    responses = await asyncio.gather(*(store_harness.http.post("/api/instances", json=b) for b in bodies))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 10 and codes.count(409) == 20, codes
    listing = (await store_harness.http.get("/api/instances", params={"limit": 100})).json()
    assert listing["total"] == 10 and len({i["name"] for i in listing["instances"]}) == 10


async def test_idempotent_create_on_both_stores(store_harness: Harness) -> None:
    headers = {"Idempotency-Key": "same"}
    responses = await asyncio.gather(
        *(store_harness.http.post("/api/instances", json=SEED_BODY, headers=headers) for _ in range(5))
    )
    ids = {r.json().get("instanceId") for r in responses if r.status_code == 201}
    assert len(ids) == 1
    assert (await store_harness.http.get("/api/instances")).json()["total"] == 1


async def test_two_reconcilers_share_rows_without_duplicates(store_harness: Harness) -> None:
    services = store_harness.services
    other = Reconciler(
        services.db, services.clock, services.client, services.catalog, services.settings, services.instances.changes
    )
    ids = [(await store_harness.create())["instanceId"] for _ in range(6)]
    for _ in range(60):
        await asyncio.gather(services.reconciler.tick(), other.tick(), services.prober.tick())
        statuses = {(await store_harness.instance(i))["status"] for i in ids}
        if statuses == {"ready"}:
            break
        store_harness.clock.advance(0.5)
    assert statuses == {"ready"}
    assert len(store_harness.upstream_instances()) == 6


async def test_a_worker_never_writes_over_a_change_made_after_it_read_the_row(store_harness: Harness) -> None:
    """Workers attach the snapshot they read instead of loading the row again, so the guard alone
    decides: a user's change since the read, or a lease taken by another worker, refuses the write."""
    created = await store_harness.create()
    db, path = store_harness.services.db, f"/api/instances/{created['instanceId']}"
    lock = not db.is_sqlite

    async def snapshot() -> Instance:
        async with db.read() as session:
            return (await session.execute(select(Instance).where(Instance.id == created["instanceId"]))).scalar_one()

    stale = await snapshot()
    assert (await store_harness.http.put(f"{path}/last-used", json={})).status_code == 200
    async with db.write() as session:
        assert await reattach_if_current(session, stale, lock=lock) is None

    fresh = await snapshot()
    async with db.write() as session:
        assert await reattach_if_current(session, fresh, lock=lock, lease_token="another-worker") is None
    async with db.write() as session:
        row = await reattach_if_current(session, fresh, lock=lock, lease_token=fresh.lease_token)
        assert row is not None
        row.status_message = "written by the worker"
        row.version += 1
    assert (await snapshot()).status_message == "written by the worker"


async def test_upgrading_gives_instances_that_failed_earlier_an_idle_clock(store_harness: Harness) -> None:
    """Migration 0002 on a store holding instances: a failed one gets `failed_at` from its last update
    (never earlier than its failure), any other keeps none; it also downgrades cleanly."""
    failed, creating = (await store_harness.create())["instanceId"], (await store_harness.create())["instanceId"]
    db = store_harness.services.db
    async with db.write() as session:
        row = (await session.execute(select(Instance).where(Instance.id == failed))).scalar_one()
        row.status = "failed"
        failed_update = row.updated_at

    def migrate(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "0001")
        command.upgrade(alembic_config(connection), "head")

    async with db.engine.begin() as conn:
        await conn.run_sync(migrate)
    async with db.read() as session:
        failed_at = dict((await session.execute(select(Instance.id, Instance.failed_at))).tuples().all())
    assert failed_at == {failed: failed_update, creating: None}


async def test_list_pages_filter_and_follow_the_cursor_on_both_stores(store_harness: Harness) -> None:
    ids = [(await store_harness.create(name=f"p-{i}"))["instanceId"] for i in range(3)]
    get = store_harness.http.get
    first = (await get("/api/instances", params={"limit": 2, "status": "creating,ready"})).json()
    rest = (
        await get("/api/instances", params={"limit": 2, "status": "creating", "cursor": first["nextCursor"]})
    ).json()
    seen = [i["instanceId"] for i in first["instances"] + rest["instances"]]
    assert sorted(seen) == sorted(ids)  # each once (created in the same instant: ordered by id)
    assert first["total"] == rest["total"] == 3 and rest["nextCursor"] is None
    named = (await get("/api/instances", params={"name": "p-1", "status": "creating"})).json()
    assert [i["instanceId"] for i in named["instances"]] == [ids[1]] and named["total"] == 1
