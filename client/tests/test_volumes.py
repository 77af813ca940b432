"""Volumes through `Client` and `AsyncClient` against a stand-in service: the requests each method sends and
what it gives back, one scenario per test run through each client (as test_both_clients.py does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import FakeService, Request, Scenario, answer, items
from novita_gpu_client import (
    ApiError,
    Client,
    VolumeFailed,
    VolumeWaitTimeout,
)


def volume(status: str, volume_id: str = "vol_1", name: str = "datasets", **more: Any) -> dict[str, Any]:
    return {"volumeId": volume_id, "name": name, "status": status, "statusMessage": None, "sizeGb": 50, **more}


def statuses(*seen: str, **more: Any) -> Callable[[Request], tuple[int, Any]]:
    """GET answers: each status in turn, the last one again and again."""
    left = list(seen)

    def handler(_request: Request) -> tuple[int, Any]:
        status = left.pop(0) if len(left) > 1 else left[0]
        return 200, volume(status, **more)

    return handler


def test_create_volume_waits_until_it_is_available(run: Callable[[Scenario], None], service: FakeService) -> None:
    service.route("POST", "/api/volumes", (201, volume("creating")))
    service.route("GET", "/api/volumes/vol_1", statuses("creating", "creating", "available"))

    async def scenario(client: Any) -> None:
        made = await answer(client.create_volume("datasets", "US-TX-04", 50, poll_interval=0.05))
        assert made["status"] == "available"

    run(scenario)
    (create,) = service.sent("POST", "/api/volumes")
    assert create.body == {"name": "datasets", "region": "US-TX-04", "sizeGb": 50}
    assert create.headers["authorization"] == "Bearer sk-test"
    assert len(service.sent("GET", "/api/volumes/vol_1")) == 3  # read by its id until available


def test_a_create_that_fails_says_why_and_one_not_waited_for_answers_at_once(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    service.route("POST", "/api/volumes", (201, volume("creating")))
    refused = "Novita refused the create: network storage quota exceeded"
    service.route("GET", "/api/volumes/vol_1", statuses("creating", "failed", statusMessage=refused))

    async def scenario(client: Any) -> None:
        with pytest.raises(VolumeFailed) as failed:
            await answer(client.create_volume("datasets", "US-TX-04", 50, poll_interval=0.01))
        assert failed.value.volume["status"] == "failed"
        assert str(failed.value) == f"volume vol_1 (datasets) is failed, not available: {refused}"
        assert (await answer(client.create_volume("datasets", "US-TX-04", 50, wait=False)))["status"] == "creating"

    run(scenario)


def test_a_wait_that_runs_out_of_time_is_a_timeout(run: Callable[[Scenario], None], service: FakeService) -> None:
    service.route("GET", "/api/volumes/datasets", statuses("creating"))
    service.route("GET", "/api/volumes/vol_1", statuses("creating"))

    async def scenario(client: Any) -> None:
        with pytest.raises(VolumeWaitTimeout) as late:
            await answer(client.wait_for_volume("datasets", timeout=0.2, poll_interval=0.05))
        assert isinstance(late.value, TimeoutError)
        assert "volume vol_1 (datasets) is still creating after 0.2 s (waiting for available)" in str(late.value)

    run(scenario)


def test_listing_reads_every_page_with_the_filters(run: Callable[[Scenario], None], service: FakeService) -> None:
    def page(request: Request) -> tuple[int, Any]:
        if request.param("cursor") is None:
            return 200, {"volumes": [volume("available", "vol_1")], "total": 2, "nextCursor": "c2"}
        return 200, {"volumes": [volume("deleted", "vol_2")], "total": 2, "nextCursor": None}

    service.route("GET", "/api/volumes", page)

    async def scenario(client: Any) -> None:
        listed = await answer(client.list_volumes(name="datasets", region="US-TX-04"))
        assert [v["volumeId"] for v in listed["volumes"]] == ["vol_1", "vol_2"]
        assert listed["total"] == 2 and listed["nextCursor"] is None
        one_by_one = await items(client.iter_volumes(page_size=1))
        assert [v["volumeId"] for v in one_by_one] == ["vol_1", "vol_2"]

    run(scenario)
    first, second, by_one = service.sent("GET", "/api/volumes")[:3]
    assert (first.param("name"), first.param("region"), first.param("limit")) == ("datasets", "US-TX-04", "100")
    assert second.param("cursor") == "c2" and second.param("name") == "datasets"
    assert by_one.param("limit") == "1" and by_one.param("name") is None


def test_get_resize_delete_and_the_admin_calls(run: Callable[[Scenario], None], service: FakeService) -> None:
    service.route("GET", "/api/volumes/..%2Fadopt", (200, volume("available")))  # one path segment, quoted
    service.route("PATCH", "/api/volumes/datasets", (200, volume("available", sizeGb=80)))
    in_use = {
        "code": "VOLUME_IN_USE",
        "message": "Volume 'datasets' is mounted by trainer (inst_1); delete (terminate) those instances first.",
        "requestId": "req-9",
        "details": [{"field": "instanceId", "message": "inst_1"}],
    }
    service.route("DELETE", "/api/volumes/datasets", (409, {"error": in_use}))
    service.route("DELETE", "/api/volumes/old", (202, volume("deleting", name="old")))
    service.route("GET", "/api/volumes/vol_1", statuses("deleting", "deleted", name="old"))
    storages = {"storages": [{"storageId": "ns-1", "name": "console-made", "sizeGb": 30}]}
    service.route("GET", "/api/volumes/unmanaged", (200, storages))
    service.route("POST", "/api/volumes/adopt", (201, volume("available", name="legacy", adopted=True)))

    async def scenario(client: Any) -> None:
        assert (await answer(client.get_volume("../adopt")))["volumeId"] == "vol_1"
        assert (await answer(client.resize_volume("datasets", 80)))["sizeGb"] == 80
        with pytest.raises(ApiError) as refused:
            await answer(client.delete_volume("datasets"))
        assert refused.value.status == 409 and refused.value.code == "VOLUME_IN_USE"
        assert "trainer (inst_1)" in refused.value.message
        assert (await answer(client.delete_volume("old")))["status"] == "deleting"
        gone = await answer(client.delete_volume("old", wait=True, poll_interval=0.01))
        assert gone["status"] == "deleted"
        assert (await answer(client.unmanaged_storages()))["storages"][0]["storageId"] == "ns-1"
        assert (await answer(client.adopt_volume("ns-1", "legacy")))["adopted"] is True

    run(scenario)
    (patch,) = service.sent("PATCH", "/api/volumes/datasets")
    assert patch.body == {"sizeGb": 80}
    assert len(service.sent("DELETE", "/api/volumes/datasets")) == 1  # a 409 is an answer: never sent again
    assert service.sent("POST", "/api/volumes/adopt")[0].body == {"storageId": "ns-1", "name": "legacy"}


def test_a_create_mounts_volumes_given_in_any_of_three_forms(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    service.route("POST", "/api/instances", (201, {"instanceId": "inst_1", "status": "creating"}))

    async def scenario(client: Any) -> None:
        mounts = [{"volume": "datasets", "mountPoint": "/data"}, ("checkpoints", "/ckpt"), "scratch"]
        await answer(client.create("job-1", "RTX 4090 24GB", "pytorch-jupyter", volumes=mounts))

    run(scenario)
    assert service.sent("POST", "/api/instances")[0].body["volumes"] == [
        {"volume": "datasets", "mountPoint": "/data"},
        {"volume": "checkpoints", "mountPoint": "/ckpt"},
        {"volume": "scratch"},  # the server's default mount point, /network
    ]
    with Client(service.url) as client, pytest.raises(TypeError, match="name, mount_point"):
        client.create("x", "y", "z", volumes=[("a", "/b", "/c")])  # type: ignore[list-item]
