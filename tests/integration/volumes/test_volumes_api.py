"""Volumes over HTTP against the emulator, as a user meets them: create one in a region, mount it by name
(the instance goes where the volume is, not where the GPU is cheapest), its data outlives a stop, it
cannot be deleted while mounted, it grows and never shrinks, and another key never sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from novita_gpu.instances.schemas import InstanceAnswer
from novita_gpu.volumes.schemas import VolumeAnswer, VolumePageAnswer
from tests.harness import Harness

TX = "US-TX-04"  # supports network storage; its RTX 4090 costs more than EU-01's and AS-SGP-02's
KEY_A, KEY_B = "sk-volumes-key-a-0123456789", "sk-volumes-key-b-0123456789"


@pytest.fixture
async def two_keys(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await Harness(tmp_path, api_keys=f"{KEY_A},{KEY_B}").start()
    harness.http.headers["Authorization"] = f"Bearer {KEY_A}"
    try:
        yield harness
    finally:
        await harness.stop()


async def create_volume(harness: Harness, name: str = "datasets", region: str = TX, size: int = 50) -> dict[str, Any]:
    answer = await harness.http.post("/api/volumes", json={"name": name, "region": region, "sizeGb": size})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert created["status"] == "creating" and created["region"] == region
    return await until_volume(harness, created["volumeId"], "available")


async def until_volume(harness: Harness, ref: str, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        return (await harness.http.get(f"/api/volumes/{ref}")).json()["status"] == status

    await harness.run_until(reached, max_seconds=120)
    view: dict[str, Any] = (await harness.http.get(f"/api/volumes/{ref}")).json()
    VolumeAnswer.model_validate(view)
    return view


async def post_instance(
    harness: Harness, name: str, headers: dict[str, str] | None = None, **fields: Any
) -> httpx.Response:
    """POST /api/instances of an RTX 4090 from the seed's template, with `fields` (volumes, region, ...)."""
    body = {"name": name, "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter", **fields}
    return await harness.http.post("/api/instances", json=body, headers=headers)


def storages(harness: Harness) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = harness.emulator.get(
        "/gpu-instance/openapi/v1/networkstorages/list",
        params={"pageNo": 1, "pageSize": 100},
        headers={"Authorization": "Bearer novita-test-key"},
    ).json()["data"]
    return listed


async def test_an_instance_goes_where_its_volume_is_and_the_data_outlives_a_stop(harness: Harness) -> None:
    volume = await create_volume(harness)
    assert volume["storageId"] and volume["sizeGb"] == 50 and volume["mountedBy"] == []
    assert volume["pricePerHour"] == pytest.approx(50 * 10 / 100_000)  # the emulator's price: 10 units a GB
    [storage] = storages(harness)
    assert storage["storageId"] == volume["storageId"] and storage["clusterName"] == TX

    created = await harness.create(volumes=[{"volume": "datasets", "mountPoint": "/data"}])
    assert created["volumes"] == [
        {"volumeId": volume["volumeId"], "name": "datasets", "mountPoint": "/data", "storageId": volume["storageId"]}
    ]
    ready = await harness.until_status(created["instanceId"], "ready")
    InstanceAnswer.model_validate(ready)
    assert ready["region"] == TX  # though EU-01 and AS-SGP-02 sell the GPU for less
    truth = harness.emulator.get(f"/_emulator/instances/{ready['novitaInstanceId']}").json()
    assert truth["networkStorages"] == [{"id": volume["storageId"], "mountPoint": "/data"}]

    marker = harness.emulator.put(f"/_emulator/volumes/{volume['storageId']}/data", json={"bytes": "epoch-7.ckpt"})
    assert marker.status_code == 200, marker.text
    stopped = await harness.http.post(f"/api/instances/{created['instanceId']}/stop")
    assert stopped.status_code == 202
    await harness.until_status(created["instanceId"], "stopped")
    await harness.http.post(f"/api/instances/{created['instanceId']}/start")
    await harness.until_status(created["instanceId"], "ready")
    seen = harness.emulator.get(f"/_emulator/volumes/{volume['storageId']}/data").json()
    assert seen["bytes"] == "epoch-7.ckpt"

    mounted = (await harness.http.get("/api/volumes/datasets")).json()
    assert mounted["mountedBy"] == [
        {"instanceId": created["instanceId"], "name": created["name"], "mountPoint": "/data"}
    ]
    refused = await harness.http.delete("/api/volumes/datasets")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "VOLUME_IN_USE" and created["name"] in error["message"]

    await harness.http.delete(f"/api/instances/{created['instanceId']}")
    await harness.until_status(created["instanceId"], "terminated")
    accepted = await harness.http.delete("/api/volumes/datasets")
    assert accepted.status_code == 202, accepted.text
    deleted = await until_volume(harness, volume["volumeId"], "deleted")
    assert deleted["deletedAt"] and storages(harness) == []
    again = await harness.http.delete(f"/api/volumes/{volume['volumeId']}")
    assert again.status_code == 200 and again.json()["status"] == "deleted"


async def test_a_volume_grows_and_never_shrinks(harness: Harness) -> None:
    volume = await create_volume(harness, size=20)
    grown = await harness.http.patch(f"/api/volumes/{volume['volumeId']}", json={"sizeGb": 60})
    assert grown.status_code == 200, grown.text
    assert grown.json()["sizeGb"] == 60 and grown.json()["pricePerHour"] == pytest.approx(60 * 10 / 100_000)
    assert storages(harness)[0]["storageSize"] == 60
    shrink = await harness.http.patch(f"/api/volumes/{volume['volumeId']}", json={"sizeGb": 30})
    assert shrink.status_code == 400
    assert shrink.json()["error"]["code"] == "VOLUME_SHRINK" and "cannot shrink" in shrink.json()["error"]["message"]
    assert storages(harness)[0]["storageSize"] == 60


async def test_products_and_regions_follow_the_volume(harness: Harness) -> None:
    await create_volume(harness, name="eu-data", region="EU-01")
    answer = await post_instance(harness, "three", productName="RTX 3090 24GB", volumes=[{"volume": "eu-data"}])
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "PRODUCT_NOT_IN_VOLUME_REGION"
    assert "EU-01" in error["message"] and "US-CA-06" in error["message"] and "US-TX-04" in error["message"]

    await create_volume(harness, name="tx-data", region=TX)
    both = [{"volume": "eu-data", "mountPoint": "/a"}, {"volume": "tx-data", "mountPoint": "/b"}]
    two_regions = await post_instance(harness, "both", volumes=both)
    assert two_regions.status_code == 400 and two_regions.json()["error"]["code"] == "VOLUMES_IN_DIFFERENT_REGIONS"
    elsewhere = await post_instance(harness, "mismatch", region=TX, volumes=[{"volume": "eu-data"}])
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "VOLUME_REGION_MISMATCH"
    assert harness.upstream_instances() == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "tiny", "region": TX, "sizeGb": 9}, "VALIDATION_ERROR"),
        ({"name": "nowhere", "region": "MARS-01", "sizeGb": 10}, "UNKNOWN_REGION"),
        ({"name": "sgp", "region": "AS-SGP-02", "sizeGb": 10}, "REGION_WITHOUT_NETWORK_STORAGE"),
        ({"name": "bad name!", "region": TX, "sizeGb": 10}, "VALIDATION_ERROR"),
        ({"name": "big", "region": TX, "sizeGb": 10**30}, "VALIDATION_ERROR"),
        ({"name": "nul\u0000", "region": TX, "sizeGb": 10}, "VALIDATION_ERROR"),
    ],
)
async def test_bad_creates_are_400_in_the_envelope(harness: Harness, body: dict[str, Any], code: str) -> None:
    answer = await harness.http.post("/api/volumes", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code
    if code == "REGION_WITHOUT_NETWORK_STORAGE":
        assert "US-TX-04" in answer.json()["error"]["message"]  # the regions that do
    assert storages(harness) == []


async def test_names_are_unique_among_live_volumes_and_lists_page(harness: Harness) -> None:
    await create_volume(harness, name="one")
    taken = await harness.http.post("/api/volumes", json={"name": "one", "region": TX, "sizeGb": 10})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "NAME_TAKEN"
    for name in ("two", "three"):
        harness.clock.advance(1)  # newest first: each a second later
        await create_volume(harness, name=name, region="EU-01")
    page = (await harness.http.get("/api/volumes", params={"limit": 2})).json()
    VolumePageAnswer.model_validate(page)
    assert [v["name"] for v in page["volumes"]] == ["three", "two"] and page["total"] == 3
    rest = (await harness.http.get("/api/volumes", params={"limit": 2, "cursor": page["nextCursor"]})).json()
    assert [v["name"] for v in rest["volumes"]] == ["one"] and rest["nextCursor"] is None
    in_eu = (await harness.http.get("/api/volumes", params={"region": "eu-01"})).json()
    assert sorted(v["name"] for v in in_eu["volumes"]) == ["three", "two"]
    assert [v["name"] for v in (await harness.http.get("/api/volumes", params={"name": "one"})).json()["volumes"]] == [
        "one"
    ]
    missing = await harness.http.get("/api/volumes/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "VOLUME_NOT_FOUND"


async def test_another_key_neither_sees_nor_mounts_a_volume(two_keys: Harness) -> None:
    harness = two_keys
    volume = await create_volume(harness, name="private")
    as_b = {"Authorization": f"Bearer {KEY_B}"}
    assert (await harness.http.get("/api/volumes", headers=as_b)).json()["volumes"] == []
    for path in ("/api/volumes/private", f"/api/volumes/{volume['volumeId']}"):
        assert (await harness.http.get(path, headers=as_b)).status_code == 404
        assert (await harness.http.delete(path, headers=as_b)).status_code == 404
        assert (await harness.http.patch(path, json={"sizeGb": 100}, headers=as_b)).status_code == 404
    mount = await post_instance(harness, "thief", headers=as_b, volumes=[{"volume": volume["volumeId"]}])
    assert mount.status_code == 400 and mount.json()["error"]["code"] == "VOLUME_NOT_FOUND"
    # B may use the same name for a volume of its own.
    mine = await harness.http.post("/api/volumes", json={"name": "private", "region": TX, "sizeGb": 10}, headers=as_b)
    assert mine.status_code == 201


async def test_a_lost_create_answer_leaves_exactly_one_storage(harness: Harness) -> None:
    """Novita makes the storage and the answer is lost (a 500 after the fact, as a connection cut after
    sending or a kill -9 mid-call leaves it): the worker finds it under the volume's name, never makes a second."""
    harness.faults(failures=[{"path": "/networkstorage/create", "status": 500, "mode": "after"}])
    answer = await harness.http.post("/api/volumes", json={"name": "in-doubt", "region": TX, "sizeGb": 10})
    volume = await until_volume(harness, answer.json()["volumeId"], "available")
    assert [s["storageId"] for s in storages(harness)] == [volume["storageId"]]


async def test_a_create_never_sent_is_sent_again_once_its_call_has_surely_ended(harness: Harness) -> None:
    """The sender died before its request left (kill -9 after recording the attempt): nothing shows under
    the name, and after the bound the create goes out again: one storage."""
    from novita_gpu.kit.tables import Volume

    harness.faults(failures=[{"path": "/networkstorage/create", "status": 500, "mode": "before"}])
    answer = await harness.http.post("/api/volumes", json={"name": "resent", "region": TX, "sizeGb": 10})
    volume_id = answer.json()["volumeId"]
    await harness.services.volume_worker.tick()
    async with harness.services.db.read() as session:
        row = await session.get(Volume, volume_id)
        assert row is not None and row.create_attempted_at is not None and row.storage_id is None
    assert storages(harness) == []  # in doubt: not sent again yet
    view = await until_volume(harness, volume_id, "available")
    assert [s["storageId"] for s in storages(harness)] == [view["storageId"]]


async def test_storage_made_in_novitas_console_is_unmanaged_until_an_admin_adopts_it(tmp_path: Path) -> None:
    admin, user = "sk-admin-volumes-0123456789", "sk-user-volumes-0123456789"
    harness = await Harness(tmp_path, api_keys=user, admin_api_keys=admin).start()
    try:
        storage_id = await harness.services.client.create_network_storage("2", "console-made", 30)
        as_user = {"Authorization": f"Bearer {user}"}
        as_admin = {"Authorization": f"Bearer {admin}"}
        assert (await harness.http.get("/api/volumes/unmanaged", headers=as_user)).status_code == 403
        listed = (await harness.http.get("/api/volumes/unmanaged", headers=as_admin)).json()["storages"]
        assert [(s["storageId"], s["name"], s["sizeGb"], s["region"]) for s in listed] == [
            (storage_id, "console-made", 30, TX)
        ]
        adopted = await harness.http.post(
            "/api/volumes/adopt", json={"storageId": storage_id, "name": "legacy"}, headers=as_admin
        )
        assert adopted.status_code == 201, adopted.text
        assert adopted.json()["adopted"] is True and adopted.json()["status"] == "available"
        assert (await harness.http.get("/api/volumes/unmanaged", headers=as_admin)).json()["storages"] == []
        twice = await harness.http.post(
            "/api/volumes/adopt", json={"storageId": storage_id, "name": "again"}, headers=as_admin
        )
        assert twice.status_code == 400
        await harness.tick(2)  # the worker's full pass leaves an adopted storage alone
        assert [s["storageId"] for s in storages(harness)] == [storage_id]
    finally:
        await harness.stop()


async def test_a_storage_deleted_in_the_console_shows_as_deleted(harness: Harness) -> None:
    volume = await create_volume(harness, name="short-lived")
    await harness.services.client.delete_network_storage(volume["storageId"])
    harness.clock.advance(harness.settings.reconcile_slow_seconds + 1)
    gone = await until_volume(harness, volume["volumeId"], "deleted")
    assert "outside the service" in gone["statusMessage"]


async def test_the_openapi_document_states_every_volume_operation(harness: Harness) -> None:
    paths = (await harness.http.get("/openapi.json")).json()["paths"]
    stated = {path: sorted(paths[path]) for path in paths if path.startswith("/api/volumes")}
    assert stated == {
        "/api/volumes": ["get", "post"],
        "/api/volumes/{volume}": ["delete", "get", "patch"],
        "/api/volumes/unmanaged": ["get"],
        "/api/volumes/adopt": ["post"],
    }


async def test_a_delete_asked_while_the_create_is_in_flight_wins(harness: Harness) -> None:
    """The user deletes a volume while Novita is still making its storage: the storage made is deleted,
    the volume ends deleted, never available."""
    import asyncio

    harness.faults(latency_ms=500, paths=["/networkstorage/create"])
    answer = await harness.http.post("/api/volumes", json={"name": "regret", "region": TX, "sizeGb": 10})
    volume_id = answer.json()["volumeId"]
    creating = asyncio.create_task(harness.services.volume_worker.tick())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not harness.stats().get("POST /networkstorage/create"):
        assert loop.time() < deadline, "the create was never sent"
        await asyncio.sleep(0.01)
    deleting = await harness.http.delete(f"/api/volumes/{volume_id}")
    assert deleting.status_code == 202 and deleting.json()["status"] == "deleting"
    await creating
    deleted = await until_volume(harness, volume_id, "deleted")
    assert deleted["availableAt"] is not None  # it was made, and then deleted
    assert storages(harness) == []


async def test_without_volumes_novitas_storages_are_never_listed(harness: Harness) -> None:
    created = await harness.create()
    await harness.until_status(created["instanceId"], "ready")
    harness.clock.advance(harness.settings.reconcile_slow_seconds * 3)
    await harness.tick(3)
    assert "GET /networkstorages/list" not in harness.stats()


async def test_a_delete_of_a_storage_already_gone_at_novita_ends_deleted(harness: Harness) -> None:
    """The storage went in the console, then the user deletes the volume before the worker noticed: the
    delete by id meets Novita's NOT_FOUND, which says it is gone."""
    volume = await create_volume(harness, name="gone-first")
    await harness.services.client.delete_network_storage(volume["storageId"])
    accepted = await harness.http.delete("/api/volumes/gone-first")
    assert accepted.status_code == 202
    await harness.services.volume_worker.tick(full=False)
    deleted = (await harness.http.get(f"/api/volumes/{volume['volumeId']}")).json()
    assert deleted["status"] == "deleted" and deleted["statusMessage"] is None
