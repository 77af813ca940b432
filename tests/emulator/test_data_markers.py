"""Data markers: what survives what. A network storage's marker lives on the storage (it outlives every
instance mounting it); an instance's local disk marker is lost when the instance stops, as on Novita."""

from __future__ import annotations

from typing import Any

import pytest

from novita_gpu.emulator import EmulatorConfig
from tests.emulator.conftest import Emulator, ok_json
from tests.emulator.test_network_storage import EU, create_storage

BOOT = 20  # seconds from create (or start) to running, at speed 1
STOP = 5  # seconds from stop to exited
RECLAIM = EmulatorConfig().timings.spot_notice + EmulatorConfig().timings.spot_reclaiming  # reclaim to exited


def write_volume(emu: Emulator, storage_id: str, data: str) -> None:
    assert ok_json(emu.http.put(f"/_emulator/volumes/{storage_id}/data", json={"bytes": data})) == {"bytes": data}


def volume(emu: Emulator, storage_id: str) -> str:
    body = ok_json(emu.http.get(f"/_emulator/volumes/{storage_id}/data"))
    assert set(body) == {"bytes"}
    return str(body["bytes"])


def write_disk(emu: Emulator, instance_id: str, data: str) -> None:
    assert ok_json(emu.http.put(f"/_emulator/instances/{instance_id}/disk", json={"bytes": data})) == {"bytes": data}


def disk(emu: Emulator, instance_id: str) -> str:
    return str(ok_json(emu.http.get(f"/_emulator/instances/{instance_id}/disk"))["bytes"])


def seen_from(emu: Emulator, instance_id: str) -> list[dict[str, Any]]:
    response = emu.http.get(f"/_emulator/instances/{instance_id}/volumes")
    assert response.status_code == 200, response.text
    mounts: list[dict[str, Any]] = response.json()
    return mounts


def mounting(emu: Emulator, storage_id: str, mount_point: str = "/data") -> str:
    return emu.create(productId="4090.16c62g.eu", networkStorages=[{"Id": storage_id, "mountPoint": mount_point}])


def test_a_storage_marker_survives_its_instance_and_is_seen_by_the_next(emu: Emulator) -> None:
    storage_id = create_storage(emu)
    assert volume(emu, storage_id) == ""  # a new storage holds nothing
    write_volume(emu, storage_id, "weights-v1")
    first = mounting(emu, storage_id)
    assert seen_from(emu, first) == [{"storageId": storage_id, "mountPoint": "/data", "bytes": "weights-v1"}]
    emu.advance(BOOT)
    write_volume(emu, storage_id, "checkpoint-7")  # what the instance wrote there

    assert emu.action("stop", first).status_code == 200
    emu.advance(STOP)
    assert emu.status(first) == "exited" and volume(emu, storage_id) == "checkpoint-7"
    assert emu.action("start", first).status_code == 200
    emu.advance(BOOT)
    assert emu.status(first) == "running" and seen_from(emu, first)[0]["bytes"] == "checkpoint-7"
    assert emu.action("delete", first).status_code == 200
    emu.advance(STOP)
    assert volume(emu, storage_id) == "checkpoint-7"

    second = mounting(emu, storage_id, "/models")
    assert seen_from(emu, second) == [{"storageId": storage_id, "mountPoint": "/models", "bytes": "checkpoint-7"}]
    assert disk(emu, second) == ""  # its own local disk starts empty


def test_every_mount_is_seen_and_an_instance_without_any_sees_none(emu: Emulator) -> None:
    a, b = create_storage(emu, name="a"), create_storage(emu, name="b")
    write_volume(emu, a, "in-a")
    both = emu.create(
        productId="4090.16c62g.eu", networkStorages=[{"Id": a, "mountPoint": "/a"}, {"Id": b, "mountPoint": "/b"}]
    )
    assert seen_from(emu, both) == [
        {"storageId": a, "mountPoint": "/a", "bytes": "in-a"},
        {"storageId": b, "mountPoint": "/b", "bytes": ""},
    ]
    assert seen_from(emu, emu.create()) == []


def test_a_deleted_storage_takes_its_marker_with_it(emu: Emulator) -> None:
    storage_id = create_storage(emu)
    write_volume(emu, storage_id, "gone soon")
    assert emu.api.post("/networkstorage/delete", json={"storageId": storage_id}).status_code == 200
    for response in (
        emu.http.get(f"/_emulator/volumes/{storage_id}/data"),
        emu.http.put(f"/_emulator/volumes/{storage_id}/data", json={"bytes": "x"}),
    ):
        assert response.status_code == 404 and response.json()["reason"] == "NETWORK_STORAGE_NOT_FOUND"


def test_the_local_disk_is_empty_on_a_new_instance_and_lost_at_a_stop(emu: Emulator) -> None:
    instance_id = emu.create()
    assert disk(emu, instance_id) == ""
    emu.advance(BOOT)
    write_disk(emu, instance_id, "pip cache")
    assert emu.action("restart", instance_id).status_code == 200  # the container restarts: its disk stays
    emu.advance(BOOT)
    assert disk(emu, instance_id) == "pip cache"

    assert emu.action("stop", instance_id).status_code == 200
    assert disk(emu, instance_id) == "pip cache"  # still there while it stops
    emu.advance(STOP)
    assert emu.status(instance_id) == "exited" and disk(emu, instance_id) == ""
    refused = emu.http.put(f"/_emulator/instances/{instance_id}/disk", json={"bytes": "x"})
    assert refused.status_code == 409 and refused.json()["reason"] == "CONFLICT"  # a stopped one has no disk

    assert emu.action("start", instance_id).status_code == 200
    emu.advance(BOOT)
    assert disk(emu, instance_id) == ""  # a start does not bring it back
    write_disk(emu, instance_id, "second life")
    assert disk(emu, instance_id) == "second life"
    assert emu.action("delete", instance_id).status_code == 200
    emu.advance(STOP)
    assert disk(emu, instance_id) == ""


def test_a_spot_reclaim_loses_the_local_disk_too(emu: Emulator) -> None:
    instance_id = emu.create(productId="4090.16c62g.eu", billingMode="spot")
    emu.advance(BOOT)
    write_disk(emu, instance_id, "unsaved")
    assert emu.http.post(f"/_emulator/instances/{instance_id}/reclaim").status_code == 200
    emu.advance(RECLAIM - 0.1)
    assert emu.status(instance_id) == "stopping" and disk(emu, instance_id) == "unsaved"  # not yet gone
    emu.advance(0.1)
    assert emu.status(instance_id) == "exited" and disk(emu, instance_id) == ""


def test_a_write_at_the_moment_of_a_stop_is_lost_with_it(make_emulator: Any) -> None:
    """With no stop phases at all (every timing 0), a marker written just before the stop, at the same
    emulated instant, is still lost: what counts is the order of events, not their times."""
    timings = {name: 0 for name in ("to_stop", "stopping", "to_create", "creating", "pulling")}
    emu = make_emulator(timings=timings)
    instance_id = emu.create()
    write_disk(emu, instance_id, "same instant")
    assert emu.action("stop", instance_id).status_code == 200
    assert emu.status(instance_id) == "exited" and disk(emu, instance_id) == ""


@pytest.mark.parametrize(
    "path",
    ["/_emulator/instances/0000000000000000/disk", "/_emulator/instances/0000000000000000/volumes"],
)
def test_unknown_instances_are_404(emu: Emulator, path: str) -> None:
    response = emu.http.get(path)
    assert response.status_code == 404 and response.json()["reason"] == "RESOURCE_NOT_FOUND"
    if path.endswith("/disk"):
        assert emu.http.put(path, json={"bytes": "x"}).status_code == 404


@pytest.mark.parametrize("body", [{}, {"bytes": 5}, {"bytes": None}, {"data": "x"}])
def test_marker_bodies_are_validated(emu: Emulator, body: dict[str, Any]) -> None:
    storage_id = create_storage(emu)
    instance_id = emu.create(productId="4090.16c62g.eu", clusterId=EU)
    for path in (f"/_emulator/volumes/{storage_id}/data", f"/_emulator/instances/{instance_id}/disk"):
        response = emu.http.put(path, json=body)
        assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM", (path, response.text)
