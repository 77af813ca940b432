"""Migrate (`POST /gpu/instance/migrate`) and its `instanceMigrate` jobs (`GET /jobs`): a reclaimed spot
instance moved to another node of its cluster, under its own id or a new one, its local disk lost and its
network storages still mounted; failures by fault, by script and for capacity; and all of it kept in the
state file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator import validation as v
from novita_gpu.emulator.state_file import StateFile
from novita_gpu.emulator.world import World
from novita_gpu.kit.clock import ManualClock
from tests.emulator.conftest import Emulator, create_body, ok_json
from tests.emulator.test_data_markers import disk, seen_from, volume, write_disk, write_volume
from tests.emulator.test_network_storage import EU, create_storage

T = EmulatorConfig().timings
RECLAIM = T.spot_notice + T.spot_reclaiming  # from a reclaim to exited
MIGRATE = T.migrating  # from a migrate to running


def reclaimed(emu: Emulator, **overrides: Any) -> str:
    """A spot instance that ran, then was reclaimed: exited with `spotReclaimTime` set."""
    instance_id = emu.create(billingMode="spot", **overrides)
    emu.advance(20)
    assert emu.http.post(f"/_emulator/instances/{instance_id}/reclaim").status_code == 200
    emu.advance(RECLAIM)
    instance = emu.get(instance_id)
    assert (instance["status"], instance["spotStatus"]) == ("exited", "terminated")
    assert instance["spotReclaimTime"] != "0"
    return instance_id


def migrate(emu: Emulator, instance_id: str) -> dict[str, Any]:
    return ok_json(emu.action("migrate", instance_id))


def jobs(emu: Emulator, **params: Any) -> dict[str, Any]:
    return ok_json(emu.api.get("/jobs", params=params))


def truth(emu: Emulator, instance_id: str) -> dict[str, Any]:
    return ok_json(emu.http.get(f"/_emulator/instances/{instance_id}"))


def test_a_migrated_instance_keeps_its_id_and_runs_on_another_node(emu: Emulator) -> None:
    instance_id = reclaimed(emu, name="trainer")
    before = emu.get(instance_id)
    answer = migrate(emu, instance_id)
    assert set(answer) == {"instanceId", "state", "jobId"}  # no newInstanceId: the id stays
    assert (answer["instanceId"], answer["state"]) == (instance_id, "migrating")

    migrating = emu.get(instance_id)
    assert migrating["status"] == "migrating"
    assert migrating["jobs"] == [{"id": answer["jobId"], "type": "instanceMigrate"}]
    assert [i["id"] for i in emu.api.get("/gpu/instances", params={"status": "migrating"}).json()["instances"]] == [
        instance_id
    ]
    emu.advance(MIGRATE - 0.1)
    assert emu.status(instance_id) == "migrating"
    emu.advance(0.1)
    after = emu.get(instance_id)
    assert (after["status"], after["spotStatus"], after["spotReclaimTime"]) == ("running", "running", "0")
    assert after["jobs"] == []
    for same in ("name", "clusterId", "productId", "gpuNum", "imageUrl", "envs", "billingMode", "rootfsSize"):
        assert after[same] == before[same], same
    assert truth(emu, instance_id)["node"] == 1  # another node of the same cluster
    assert [h["status"] for h in truth(emu, instance_id)["history"]][-2:] == ["migrating", "running"]


def test_the_migrate_job_is_listed_running_then_success(emu: Emulator) -> None:
    instance_id = reclaimed(emu)
    job_id = migrate(emu, instance_id)["jobId"]
    created = str(int(emu.clock.now().timestamp()))
    listing = jobs(emu)
    assert listing["total"] == 1
    [job] = listing["jobs"]
    assert len(job_id) == 16 and job_id.isalnum() and job_id == job_id.lower()
    assert job == {
        "Id": job_id,
        "user": job["user"],
        "type": "instanceMigrate",
        "envs": [],
        "state": {"state": "running", "error": "", "errorMessage": ""},
        "logAddress": "",
        "createdAt": created,
        "updateAt": created,
        "instanceId": instance_id,
    }
    emu.advance(MIGRATE)
    [done] = jobs(emu)["jobs"]
    assert done["state"] == {"state": "success", "error": "", "errorMessage": ""}
    assert done["updateAt"] == str(int(emu.clock.now().timestamp()))


def test_with_migrate_new_id_the_old_id_is_removed_and_a_new_one_carries_the_instance(emu: Emulator) -> None:
    ok_json(emu.http.put("/_emulator/spot", json={"migrateNewId": True}))
    instance_id = reclaimed(emu, name="trainer")
    before = emu.get(instance_id)
    answer = migrate(emu, instance_id)
    new_id = answer["newInstanceId"]
    assert new_id != instance_id and (answer["instanceId"], answer["state"]) == (instance_id, "migrating")
    assert emu.status(instance_id) == "removed"
    assert emu.status(new_id) == "migrating"
    emu.advance(MIGRATE)
    after = emu.get(new_id)
    assert after["status"] == "running"
    for same in ("name", "clusterId", "productId", "gpuNum", "imageUrl", "envs", "billingMode", "rootfsSize"):
        assert after[same] == before[same], same
    assert [p["port"] for p in after["portMappings"]] == [p["port"] for p in before["portMappings"]]
    assert truth(emu, new_id)["node"] == 1
    [job] = jobs(emu)["jobs"]
    assert (job["instanceId"], job["state"]["state"]) == (instance_id, "success")
    emu.advance(EmulatorConfig().removed_visible_seconds)
    gone = emu.api.get("/gpu/instance", params={"instanceId": instance_id})
    assert gone.json()["reason"] == "RESOURCE_NOT_FOUND"


@pytest.mark.parametrize("new_id", [False, True])
def test_migrate_loses_the_local_disk_and_keeps_the_network_storage(emu: Emulator, new_id: bool) -> None:
    ok_json(emu.http.put("/_emulator/spot", json={"migrateNewId": new_id}))
    storage_id = create_storage(emu)
    mounts = [{"Id": storage_id, "mountPoint": "/data"}]
    instance_id = emu.create(productId="4090.16c62g.eu", billingMode="spot", clusterId=EU, networkStorages=mounts)
    emu.advance(20)
    write_disk(emu, instance_id, "scratch")
    write_volume(emu, storage_id, "checkpoint-3")
    assert emu.http.post(f"/_emulator/instances/{instance_id}/reclaim").status_code == 200
    emu.advance(RECLAIM)
    answer = migrate(emu, instance_id)
    moved = answer.get("newInstanceId", instance_id)
    refused = emu.http.put(f"/_emulator/instances/{moved}/disk", json={"bytes": "x"})
    assert refused.status_code == 409  # no disk while it is being moved
    emu.advance(MIGRATE)
    assert emu.status(moved) == "running"
    assert disk(emu, moved) == ""
    assert seen_from(emu, moved) == [{"storageId": storage_id, "mountPoint": "/data", "bytes": "checkpoint-3"}]
    assert volume(emu, storage_id) == "checkpoint-3"
    assert [m["id"] for m in emu.get(moved)["volumeMounts"]] == [storage_id]
    in_use = emu.api.post("/networkstorage/delete", json={"storageId": storage_id})
    assert in_use.json()["reason"] == "NETWORK_STORAGE_IN_USE"


def test_a_disk_written_after_the_migration_is_kept(emu: Emulator) -> None:
    instance_id = reclaimed(emu)
    migrate(emu, instance_id)
    emu.advance(MIGRATE)
    write_disk(emu, instance_id, "new life")
    emu.advance(60)
    assert disk(emu, instance_id) == "new life"


def test_only_an_exited_instance_can_be_migrated(emu: Emulator) -> None:
    running = emu.create(billingMode="spot")
    for _ in range(2):  # while it boots, then running
        refused = emu.action("migrate", running)
        assert refused.status_code == 400
        assert (refused.json()["reason"], refused.json()["message"]) == ("CONFLICT", "invalid state change")
        emu.advance(20)
    instance_id = reclaimed(emu)
    migrate(emu, instance_id)
    again = emu.action("migrate", instance_id)  # migrating already
    assert again.status_code == 400 and again.json()["message"] == "invalid state change"
    unknown = emu.action("migrate", "0000000000000000")
    assert unknown.status_code == 400 and unknown.json()["reason"] == "RESOURCE_NOT_FOUND"
    bad = emu.api.post("/gpu/instance/migrate", json={})
    assert bad.status_code == 400 and bad.json()["reason"] == "VALIDATOR_PARAM"
    assert jobs(emu)["total"] == 1


def test_a_stopped_on_demand_instance_can_be_migrated_too(emu: Emulator) -> None:
    """The reference's state machine: exited -> migrating -> running, whatever stopped it."""
    instance_id = emu.create()
    emu.advance(20)
    emu.action("stop", instance_id)
    emu.advance(5)
    migrate(emu, instance_id)
    emu.advance(MIGRATE)
    instance = emu.get(instance_id)
    assert (instance["status"], instance["spotStatus"]) == ("running", "")


def test_migrate_job_fails_fault(emu: Emulator) -> None:
    emu.faults(migrate_job_fails=1)
    instance_id = reclaimed(emu)
    answer = migrate(emu, instance_id)  # accepted: the job fails later
    assert answer["state"] == "migrating"
    assert emu.faults()["migrate_job_fails"] == 0
    emu.advance(MIGRATE)
    instance = emu.get(instance_id)
    assert (instance["status"], instance["spotStatus"]) == ("exited", "terminated")
    assert instance["spotReclaimTime"] != "0"  # still a reclaimed instance
    [job] = jobs(emu)["jobs"]
    assert job["state"]["state"] == "fail" and job["state"]["error"] == "MIGRATE_FAILED"
    assert "migrate_job_fails" in job["state"]["errorMessage"]
    assert jobs(emu, state="fail")["total"] == 1 and jobs(emu, state="success")["total"] == 0

    second = migrate(emu, instance_id)  # the next one goes through
    emu.advance(MIGRATE)
    assert emu.status(instance_id) == "running"
    assert jobs(emu, jobId=second["jobId"])["jobs"][0]["state"]["state"] == "success"


def test_migrate_job_fails_as_a_boolean_and_with_a_new_id(emu: Emulator) -> None:
    emu.faults(migrate_job_fails=True)
    ok_json(emu.http.put("/_emulator/spot", json={"migrateNewId": True}))
    instance_id = reclaimed(emu)
    new_id = migrate(emu, instance_id)["newInstanceId"]
    emu.advance(MIGRATE)
    assert emu.status(new_id) == "exited" and emu.status(instance_id) == "removed"
    assert jobs(emu)["jobs"][0]["state"]["state"] == "fail"


def test_a_delete_during_the_migration_fails_its_job(emu: Emulator) -> None:
    instance_id = reclaimed(emu)
    migrate(emu, instance_id)
    emu.advance(1)
    assert emu.action("delete", instance_id).status_code == 200
    [job] = jobs(emu)["jobs"]
    assert job["state"]["state"] == "fail" and "deleted" in job["state"]["errorMessage"]


@pytest.mark.parametrize("mode", ["before", "after"])
def test_scripted_refusal_of_migrate(emu: Emulator, mode: str) -> None:
    instance_id = reclaimed(emu)
    failure = {"path": "/gpu/instance/migrate", "status": 400, "reason": "MIGRATE_INSUFFICIENT_RESOURCE", "mode": mode}
    emu.faults(failures=[failure])
    refused = emu.action("migrate", instance_id)
    assert refused.status_code == 400 and refused.json()["reason"] == "MIGRATE_INSUFFICIENT_RESOURCE"
    if mode == "before":  # nothing was done
        assert emu.status(instance_id) == "exited" and jobs(emu)["total"] == 0
    else:  # done, although the caller saw it refused
        assert emu.status(instance_id) == "migrating" and jobs(emu)["total"] == 1
    assert emu.faults()["failures"] == []


def test_migrate_needs_room_in_the_cluster_and_holds_it(emu: Emulator) -> None:
    response = emu.http.put("/_emulator/capacity", json={"clusterId": "1", "productId": "4090.16c62g", "gpus": 1})
    assert response.status_code == 200
    instance_id = reclaimed(emu, clusterId="1")
    taker = emu.create(billingMode="spot", clusterId="1")  # the reclaimed one's GPU, taken meanwhile
    refused = emu.action("migrate", instance_id)
    assert refused.status_code == 400 and refused.json()["reason"] == "MIGRATE_INSUFFICIENT_RESOURCE"
    assert emu.status(instance_id) == "exited" and jobs(emu)["total"] == 0

    emu.action("delete", taker)
    emu.advance(2)
    migrate(emu, instance_id)
    full = emu.api.post("/gpu/instance/create", json=create_body(billingMode="spot", clusterId="1"))
    assert full.status_code == 400 and full.json()["reason"] == "INSUFFICIENT_RESOURCE"  # held while migrating


def test_migrating_takes_the_speed_into_account(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(speed=10)
    instance_id = emu.create()
    emu.advance(2)
    emu.action("stop", instance_id)
    emu.advance(1)
    migrate(emu, instance_id)
    emu.advance(MIGRATE / 10 - 0.01)
    assert emu.status(instance_id) == "migrating"
    emu.advance(0.01)
    assert emu.status(instance_id) == "running"


def test_jobs_listing_pages_and_filters(emu: Emulator) -> None:
    ids = [emu.create(name=f"n-{i}") for i in range(3)]
    emu.advance(20)
    for instance_id in ids:
        emu.action("stop", instance_id)
    emu.advance(5)
    job_ids = []
    for instance_id in ids:
        job_ids.append(migrate(emu, instance_id)["jobId"])
        emu.advance(100)
    newest_first = list(reversed(job_ids))
    assert [j["Id"] for j in jobs(emu)["jobs"]] == newest_first
    page = jobs(emu, pageSize=2, pageNum=2)
    assert (page["total"], [j["Id"] for j in page["jobs"]]) == (3, newest_first[2:])
    assert [j["Id"] for j in jobs(emu, jobId=job_ids[1])["jobs"]] == [job_ids[1]]
    assert jobs(emu, type="instanceMigrate")["total"] == 3 and jobs(emu, type="saveImage")["total"] == 0
    assert jobs(emu, state="success")["total"] == 3 and jobs(emu, state="running")["total"] == 0
    first = int(jobs(emu, jobId=job_ids[0])["jobs"][0]["createdAt"])
    assert jobs(emu, startTime=first + 1)["total"] == 2
    assert jobs(emu, endTime=first)["total"] == 1
    assert jobs(emu, startTime=0, endTime=0)["total"] == 3
    user = jobs(emu)["jobs"][0]["user"]
    assert jobs(emu, creators=f"someone,{user}")["total"] == 3 and jobs(emu, creators="someone")["total"] == 0
    for bad in ({"state": "succeeded"}, {"type": "migrate"}, {"startTime": "soon"}, {"pageSize": 101}):
        response = emu.api.get("/jobs", params=bad)
        assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM", bad


def test_jobs_need_the_key_and_can_be_faulted(emu: Emulator) -> None:
    assert emu.http.get("/gpu-instance/openapi/v1/jobs").status_code == 401
    emu.faults(failures=[{"path": "/jobs", "status": 503}])
    assert emu.api.get("/jobs").status_code == 503
    assert jobs(emu) == {"jobs": [], "total": 0}


def test_migrations_jobs_and_settings_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "emu.db"
    first = World(EmulatorConfig(), clock, StateFile(path))
    auths = {a.id for a in first.catalog.registry_auths}
    instance = first.create(v.create_request(create_body(billingMode="spot"), auths))
    clock.advance(20)
    first.set_spot_settings({"noticeSeconds": 5, "migrateNewId": True})
    first.reclaim(instance.id)
    clock.advance(5 + T.spot_reclaiming)
    moved, job = first.migrate(instance.id)
    # no close(): as after kill -9

    second = World(EmulatorConfig(), clock, StateFile(path))
    assert second.spot_settings().model_dump(by_alias=True) == {
        "noticeSeconds": 5.0,
        "migrateNewId": True,
        "capacity": {},
    }
    assert second.get(moved.id).status_at(second.now()) == "migrating"
    assert second.get(instance.id).status_at(second.now()) == "removed"
    assert second.running_jobs(moved.id) == [{"id": job.id, "type": "instanceMigrate"}]
    clock.advance(MIGRATE)
    found, total = second.jobs(v.job_query({}))
    assert total == 1 and found[0]["Id"] == job.id
    assert found[0]["state"] == {"state": "success", "error": "", "errorMessage": ""}
    assert second.get(moved.id).node == 1
    again = second.migrate  # a new job gets a new id even after the restart
    second.stop(moved.id)
    clock.advance(5)
    assert again(moved.id)[1].id != job.id

    second.reset()
    third = World(EmulatorConfig(), clock, StateFile(path))
    assert third.jobs(v.job_query({})) == ([], 0)
    assert third.spot_settings().model_dump(by_alias=True) == {
        "noticeSeconds": 30.0,
        "migrateNewId": False,
        "capacity": {},
    }
