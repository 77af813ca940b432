"""Volumes through the Python SDK against the real service and emulator over loopback HTTP: create one
(waiting until available), mount it in an instance by name, grow it, and delete it once nothing mounts it;
sync and async alike.

The sync client runs in a worker thread while the harness drives the volume worker and the reconciler
(`while_driving`); the async client is awaited beside a task that does the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from novita_gpu_client import ApiError, Client, VolumeFailed
from tests.fixtures.live_service import LiveService, live_service

PRODUCT, TEMPLATE = "RTX 4090 24GB", "pytorch-jupyter"
TX = "US-TX-04"  # supports network storage
T = TypeVar("T")

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def driving(live: LiveService, work: Awaitable[T]) -> T:
    """Await `work` (an async client's call) while the harness ticks and the clock moves."""
    task = asyncio.ensure_future(work)

    async def finished() -> bool:
        await asyncio.wait({task}, timeout=0.005)
        return task.done()

    await live.harness.run_until(finished, max_seconds=300)
    return await task


def sdk(client: Client, method: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: getattr(client, method)(*args, **kwargs)


async def test_a_volume_is_made_mounted_grown_and_deleted(live: LiveService, client: Client) -> None:
    made = await live.while_driving(sdk(client, "create_volume", "sdk-data", TX, 20, poll_interval=0.05))
    assert made["status"] == "available" and made["storageId"] and made["region"] == TX
    assert made["sizeGb"] == 20 and made["pricePerGbMonth"] > 0 and made["mountedBy"] == []
    by_name = await asyncio.to_thread(client.get_volume, "sdk-data")
    assert by_name["volumeId"] == made["volumeId"]

    grown = await asyncio.to_thread(client.resize_volume, "sdk-data", 40)
    assert grown["sizeGb"] == 40 and grown["pricePerHour"] > made["pricePerHour"]
    with pytest.raises(ApiError) as shrink:
        await asyncio.to_thread(client.resize_volume, made["volumeId"], 30)
    assert shrink.value.status == 400 and shrink.value.code == "VOLUME_SHRINK"

    created = await asyncio.to_thread(
        lambda: client.create("sdk-mounts", PRODUCT, TEMPLATE, volumes=[("sdk-data", "/data")])
    )
    assert created["volumes"] == [
        {"volumeId": made["volumeId"], "name": "sdk-data", "mountPoint": "/data", "storageId": made["storageId"]}
    ]
    ready = await live.harness.until_status(created["instanceId"], "ready")
    assert ready["region"] == TX  # where the volume is
    mounted = await asyncio.to_thread(client.get_volume, made["volumeId"])
    assert mounted["mountedBy"] == [{"instanceId": created["instanceId"], "name": "sdk-mounts", "mountPoint": "/data"}]

    with pytest.raises(ApiError) as in_use:
        await asyncio.to_thread(client.delete_volume, "sdk-data")
    assert in_use.value.status == 409 and in_use.value.code == "VOLUME_IN_USE"
    assert f"sdk-mounts ({created['instanceId']})" in str(in_use.value)

    await asyncio.to_thread(client.delete, created["instanceId"])
    await live.harness.until_status(created["instanceId"], "terminated")
    gone = await live.while_driving(sdk(client, "delete_volume", "sdk-data", wait=True, poll_interval=0.05))
    assert gone["status"] == "deleted" and gone["deletedAt"]
    again = await asyncio.to_thread(client.delete_volume, made["volumeId"])
    assert again["status"] == "deleted"  # already: nothing more to do


async def test_listing_filters_and_reads_every_page(live: LiveService, client: Client) -> None:
    names = []
    for i in range(3):
        live.harness.clock.advance(1)  # newest first, each a second later
        names.append(f"sdk-list-{i}")
        await asyncio.to_thread(lambda i=i: client.create_volume(f"sdk-list-{i}", "EU-01", 10, wait=False))
    every = await asyncio.to_thread(lambda: client.list_volumes(region="eu-01", page_size=2))
    assert [v["name"] for v in every["volumes"]] == names[::-1] and every["total"] == 3
    assert every["nextCursor"] is None
    one = await asyncio.to_thread(lambda: client.list_volumes(name="sdk-list-1"))
    assert [v["name"] for v in one["volumes"]] == ["sdk-list-1"]
    lazily = await asyncio.to_thread(lambda: [v["name"] for v in client.iter_volumes(region="EU-01", page_size=1)])
    assert lazily == names[::-1]
    with pytest.raises(ApiError) as missing:
        await asyncio.to_thread(client.get_volume, "no-such-volume")
    assert missing.value.status == 404 and missing.value.code == "VOLUME_NOT_FOUND"


async def test_a_refused_create_raises_volume_failed_with_novitas_reason(live: LiveService, client: Client) -> None:
    # CA-MTL-01 holds 2048 GB of network storage in all: Novita refuses a bigger one.
    with pytest.raises(VolumeFailed) as failed:
        await live.while_driving(sdk(client, "create_volume", "sdk-too-big", "CA-MTL-01", 3000, poll_interval=0.05))
    assert failed.value.volume["status"] == "failed"
    assert "Novita refused the create" in str(failed.value) and "sdk-too-big" in str(failed.value)
    with pytest.raises(ApiError) as no_storage:
        await asyncio.to_thread(client.create_volume, "sdk-sgp", "AS-SGP-02", 10)
    assert no_storage.value.code == "REGION_WITHOUT_NETWORK_STORAGE" and TX in str(no_storage.value)


async def test_async_client_mirrors_the_sync_one(live: LiveService) -> None:
    async with live.async_client() as client:
        made = await driving(live, client.create_volume("async-data", TX, 10, poll_interval=0.05))
        assert made["status"] == "available"
        assert [v["name"] async for v in client.iter_volumes(name="async-data")] == ["async-data"]
        assert (await client.list_volumes(name="async-data"))["volumes"][0]["volumeId"] == made["volumeId"]
        created = await client.create("async-mounts", PRODUCT, TEMPLATE, volumes=["async-data"])
        assert created["volumes"][0]["mountPoint"] == "/network"  # Novita's default
        assert (await client.resize_volume("async-data", 15))["sizeGb"] == 15
        await client.delete(created["instanceId"])
        await live.harness.until_status(created["instanceId"], "terminated")
        deleting = await client.delete_volume("async-data")
        assert deleting["status"] == "deleting"
        gone = await driving(live, client.wait_for_volume(made["volumeId"], "deleted", poll_interval=0.05))
        assert gone["status"] == "deleted"


async def test_an_admin_adopts_a_storage_made_in_novitas_console(tmp_path: Path) -> None:
    admin, user = "sk-admin-sdk-volumes-0123456789", "sk-user-sdk-volumes-0123456789"
    async with live_service(tmp_path, api_key=user, admin_api_keys=admin) as live:
        storage_id = await live.harness.services.client.create_network_storage("2", "console-made", 30)
        with live.client() as as_user, live.client(api_key=admin) as as_admin:
            with pytest.raises(ApiError) as refused:
                await asyncio.to_thread(as_user.unmanaged_storages)
            assert refused.value.status == 403
            storages = (await asyncio.to_thread(as_admin.unmanaged_storages))["storages"]
            assert [(s["storageId"], s["name"], s["sizeGb"]) for s in storages] == [(storage_id, "console-made", 30)]
            adopted = await asyncio.to_thread(as_admin.adopt_volume, storage_id, "legacy")
            assert adopted["adopted"] is True and adopted["status"] == "available" and adopted["region"] == TX
            assert (await asyncio.to_thread(as_admin.unmanaged_storages))["storages"] == []
