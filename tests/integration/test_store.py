"""The same store code on SQLite and PostgreSQL: lifecycle, uniqueness, idempotency, leases, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from novita_gpu.instances.reconciler import Reconciler
from tests.fixtures.databases import fresh_database
from tests.harness import SEED_BODY, Harness


@pytest.fixture(params=["sqlite", "postgres"])
async def store_harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with fresh_database(request.param, tmp_path) as url:
        h = await Harness(tmp_path, database_url=url).start()
        try:
            yield h
        finally:
            await h.stop()


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
