"""Contract: the client's spot recovery calls against the real emulator over loopback HTTP: the listing's
spot fields during a reclaim's notice, `migrate_instance` (sent once), and `list_jobs`/`iter_jobs`."""

from __future__ import annotations

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.novita import (
    InsufficientResource,
    InvalidStateChange,
    Job,
    Listed,
    NotFound,
    NovitaClient,
    RateLimited,
    UpstreamUnavailable,
)
from tests.fixtures.novita_client import Observed, Sleeps
from tests.fixtures.novita_emulator import Emulator
from tests.integration.novita.test_novita_contract import request

T = EmulatorConfig().timings
BOOT = T.to_create + T.creating + T.pulling
RECLAIM = T.spot_notice + T.spot_reclaiming
MIGRATE_PATH = "POST /gpu/instance/migrate"


async def listed(client: NovitaClient, instance_id: str) -> Listed:
    return next(i for i in [x async for x in client.iter_listed()] if i.id == instance_id)


async def reclaimed(emu: Emulator, client: NovitaClient, name: str = "ng-spot") -> str:
    instance_id = await client.create_instance(request(name, billing_mode="spot"))
    emu.clock.advance(BOOT)
    emu.reclaim(instance_id)
    emu.clock.advance(RECLAIM)
    return instance_id


async def test_the_listing_shows_the_notice_before_a_reclaim(emu: Emulator, client: NovitaClient) -> None:
    instance_id = await client.create_instance(request("ng-spot", billing_mode="spot"))
    emu.clock.advance(BOOT)
    running = await listed(client, instance_id)
    assert (running.spot_status, running.spot_reclaim_time, running.spot_notified) == ("running", 0, False)

    due = int(emu.clock.now().timestamp() + T.spot_notice)
    emu.reclaim(instance_id)
    notified = await listed(client, instance_id)
    assert (notified.status, notified.spot_status, notified.spot_reclaim_time) == ("running", "notified", due)
    assert notified.spot_notified and notified.spot_reclaimed
    assert Listed.of(await client.get_instance(instance_id)) == notified  # read by id: the same view

    emu.clock.advance(RECLAIM)
    gone = await listed(client, instance_id)
    assert (gone.status, gone.spot_status, gone.spot_reclaim_time) == ("exited", "terminated", due)
    assert not gone.spot_notified and gone.spot_reclaimed


async def test_migrate_keeps_the_id_and_its_job_succeeds(
    emu: Emulator, client: NovitaClient, observed: Observed
) -> None:
    instance_id = await reclaimed(emu, client)
    migration = await client.migrate_instance(instance_id)
    assert (migration.instance_id, migration.new_instance_id, migration.state) == (instance_id, "", "migrating")
    assert migration.moved_to == instance_id and migration.job_id
    assert (await client.get_instance(instance_id)).status == "migrating"

    [job] = (await client.list_jobs(type="instanceMigrate")).jobs
    created = emu.clock.now().replace(microsecond=0)
    assert (job.id, job.type, job.state, job.instance_id) == (
        migration.job_id,
        "instanceMigrate",
        "running",
        instance_id,
    )
    assert job.created_at == created and not job.finished
    emu.clock.advance(T.migrating)
    [done] = [j async for j in client.iter_jobs(job_id=migration.job_id)]
    assert done.succeeded and done.finished and (done.error, done.error_message) == ("", "")
    assert done.updated_at is not None and done.updated_at > created
    back = await client.get_instance(instance_id)
    assert (back.status, back.spot_status, back.spot_reclaim_time) == ("running", "running", 0)
    assert ("instances.migrate", "ok") in observed and ("jobs.list", "ok") in observed


async def test_migrate_to_a_new_id(emu: Emulator, client: NovitaClient) -> None:
    assert emu.control.put("/_emulator/spot", json={"migrateNewId": True}).status_code == 200
    instance_id = await reclaimed(emu, client, "ng-moves")
    migration = await client.migrate_instance(instance_id)
    assert migration.new_instance_id and migration.moved_to == migration.new_instance_id != instance_id
    emu.clock.advance(T.migrating)
    moved = await client.get_instance(migration.moved_to)
    assert (moved.name, moved.status) == ("ng-moves", "running")
    assert (await client.get_instance(instance_id)).status == "removed"


async def test_a_failed_migrate_job(emu: Emulator, client: NovitaClient) -> None:
    emu.faults(migrate_job_fails=1)
    instance_id = await reclaimed(emu, client)
    migration = await client.migrate_instance(instance_id)
    emu.clock.advance(T.migrating)
    [job] = [j async for j in client.iter_jobs(state="fail")]
    assert job.id == migration.job_id and job.finished and not job.succeeded
    assert job.error == "MIGRATE_FAILED" and job.error_message
    assert (await client.get_instance(instance_id)).status == "exited"


async def test_migrate_refusals_are_typed(emu: Emulator, client: NovitaClient, sleeps: Sleeps) -> None:
    running = await client.create_instance(request("ng-running", billing_mode="spot"))
    with pytest.raises(InvalidStateChange):
        await client.migrate_instance(running)
    with pytest.raises(NotFound):
        await client.migrate_instance("0000000000000000")
    await client.delete_instance(running)
    emu.clock.advance(T.to_remove + T.removing)
    emu.set_capacity("1", "4090.16c62g", 1)
    instance_id = await reclaimed(emu, client)
    await client.create_instance(request("ng-taker", billing_mode="spot", cluster_id="1"))  # takes its GPU
    with pytest.raises(InsufficientResource) as full:
        await client.migrate_instance(instance_id)
    assert full.value.reason == "MIGRATE_INSUFFICIENT_RESOURCE"
    assert sleeps == []  # none of them retried


async def test_migrate_is_sent_once_when_novita_may_have_acted(emu: Emulator, client: NovitaClient) -> None:
    instance_id = await reclaimed(emu, client)
    emu.faults(failures=[{"path": "/gpu/instance/migrate", "status": 500, "mode": "after"}])
    with pytest.raises(UpstreamUnavailable):
        await client.migrate_instance(instance_id)
    assert emu.stats()[MIGRATE_PATH] == 1  # not repeated: it did migrate
    assert (await client.get_instance(instance_id)).status == "migrating"
    assert [j.instance_id async for j in client.iter_jobs()] == [instance_id]


async def test_migrate_is_retried_when_novita_cannot_have_acted(
    emu: Emulator, client: NovitaClient, sleeps: Sleeps
) -> None:
    instance_id = await reclaimed(emu, client)
    emu.faults(failures=[{"path": "/gpu/instance/migrate", "status": 429}])
    migration = await client.migrate_instance(instance_id)
    assert emu.stats()[MIGRATE_PATH] == 2 and len(sleeps) == 1
    assert migration.moved_to == instance_id
    emu.faults(failures=[{"path": "/gpu/instance/migrate", "status": 429, "count": 10}])
    with pytest.raises(RateLimited):
        await client.migrate_instance(instance_id)


async def test_jobs_pages_and_filters(emu: Emulator, client: NovitaClient) -> None:
    ids = [await reclaimed(emu, client, f"ng-{n}") for n in range(3)]
    job_ids = []
    for instance_id in ids:
        job_ids.append((await client.migrate_instance(instance_id)).job_id)
        emu.clock.advance(60)
    page = await client.list_jobs(page_size=2, page_num=1)
    assert page.total == 3 and len(page.jobs) == 2
    everything: list[Job] = [j async for j in client.iter_jobs(page_size=2)]
    assert sorted(j.id for j in everything) == sorted(job_ids)
    first = min(j.created_at for j in everything if j.created_at is not None)
    later = [j.id async for j in client.iter_jobs(start_time=first.timestamp() + 1)]
    assert sorted(later) == sorted(job_ids[1:])
    assert [j.id async for j in client.iter_jobs(end_time=first.timestamp())] == [job_ids[0]]
    user = everything[0].user
    assert len([j async for j in client.iter_jobs(creators=[user])]) == 3
    assert [j async for j in client.iter_jobs(creators=["someone-else"])] == []
    assert [j async for j in client.iter_jobs(type="saveImage")] == []
