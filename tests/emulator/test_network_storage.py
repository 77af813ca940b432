"""Network storage (create, list, update, delete) and mounting it at instance create, over plain HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.emulator.conftest import Emulator, create_body, ok_json

EU = "5"  # EU-01: offers 4090.16c62g.eu and supports network storage
SINGAPORE = "6"  # AS-SGP-02: no network storage


def create_storage(emu: Emulator, name: str = "datasets", size: int = 50, cluster: str = EU) -> str:
    response = emu.api.post(
        "/networkstorage/create", json={"clusterId": cluster, "storageName": name, "storageSize": size}
    )
    assert response.status_code == 200, response.text
    storage_id = response.json()
    assert isinstance(storage_id, str)  # a bare JSON string, as the reference shows
    return storage_id


def storages(emu: Emulator, **params: Any) -> dict[str, Any]:
    return ok_json(emu.api.get("/networkstorages/list", params=params))


def test_create_list_update_delete(emu: Emulator) -> None:
    storage_id = create_storage(emu)
    assert uuid.UUID(storage_id).version == 4
    [item] = storages(emu)["data"]
    assert item == {
        "storageId": storage_id,
        "storageName": "datasets",
        "storageSize": 50,
        "clusterId": EU,
        "clusterName": "EU-01",
        "price": "500",
    }

    grown = emu.api.post(
        "/networkstorage/update", json={"storageId": storage_id, "storageName": "data", "storageSize": 80}
    )
    assert grown.status_code == 200 and grown.json() == {}
    # The update page types storageSize as a string; Novita's console sends a number: both work.
    as_text = {"storageId": storage_id, "storageName": "data", "storageSize": "100"}
    assert emu.api.post("/networkstorage/update", json=as_text).status_code == 200
    assert storages(emu)["data"][0]["storageSize"] == 100
    shrink = emu.api.post("/networkstorage/update", json={**as_text, "storageSize": 20})
    assert shrink.status_code == 400 and shrink.json()["reason"] == "VALIDATOR_PARAM"

    assert emu.api.post("/networkstorage/delete", json={"storageId": storage_id}).json() == {}
    assert storages(emu) == {"data": [], "total": 0}
    again = emu.api.post("/networkstorage/delete", json={"storageId": storage_id})
    assert again.status_code == 400 and again.json()["reason"] == "NETWORK_STORAGE_NOT_FOUND"


def test_list_pages_with_page_no_and_filters(emu: Emulator) -> None:
    ids = [create_storage(emu, name=f"vol-{n}") for n in range(5)]
    first = storages(emu, pageNo=1, pageSize=2)
    assert first["total"] == 5 and [s["storageId"] for s in first["data"]] == ids[::-1][:2]
    last = storages(emu, pageNo=3, pageSize=2)
    assert [s["storageId"] for s in last["data"]] == [ids[0]]
    assert [s["storageName"] for s in storages(emu, storageName="VOL-3")["data"]] == ["vol-3"]
    assert storages(emu, storageId=ids[1])["data"][0]["storageId"] == ids[1]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"storageName": "x", "storageSize": 10}, "VALIDATOR_PARAM"),
        ({"clusterId": EU, "storageSize": 10}, "VALIDATOR_PARAM"),
        ({"clusterId": EU, "storageName": "x"}, "VALIDATOR_PARAM"),
        ({"clusterId": EU, "storageName": "x", "storageSize": 9}, "VALIDATOR_PARAM"),
        ({"clusterId": EU, "storageName": "x", "storageSize": 10.5}, "VALIDATOR_PARAM"),
        ({"clusterId": EU, "storageName": "x", "storageSize": 1_000_000}, "NETWORK_STORAGE_TOO_LARGE"),
        ({"clusterId": "99", "storageName": "x", "storageSize": 10}, "VALIDATOR_PARAM"),
        ({"clusterId": SINGAPORE, "storageName": "x", "storageSize": 10}, "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT"),
    ],
)
def test_create_is_validated(emu: Emulator, body: dict[str, Any], reason: str) -> None:
    response = emu.api.post("/networkstorage/create", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == reason
    assert storages(emu)["total"] == 0


def test_an_instance_mounts_storage_in_the_storage_cluster(emu: Emulator) -> None:
    storage_id = create_storage(emu)
    mounts = [{"Id": storage_id, "mountPoint": "/data"}]
    # No clusterId: the emulator creates it where the storage is (RTX 4090 is offered in five clusters).
    instance_id = emu.create(productId="4090.16c62g.eu", networkStorages=mounts)
    instance = emu.get(instance_id)
    assert instance["clusterId"] == EU
    assert instance["volumeMounts"] == [{"type": "network", "size": "50", "id": storage_id, "mountPath": "/data"}]
    listed = emu.api.get("/gpu/instances").json()["instances"][0]
    assert listed["volumeMounts"] == instance["volumeMounts"]
    truth = emu.http.get(f"/_emulator/instances/{instance_id}").json()
    assert truth["networkStorages"] == [{"id": storage_id, "mountPoint": "/data"}]

    in_use = emu.api.post("/networkstorage/delete", json={"storageId": storage_id})
    assert in_use.status_code == 400 and in_use.json()["reason"] == "NETWORK_STORAGE_IN_USE"
    emu.action("delete", instance_id)
    assert emu.api.post("/networkstorage/delete", json={"storageId": storage_id}).status_code == 200


def test_placement_follows_the_storage_when_no_cluster_is_given(emu: Emulator) -> None:
    """RTX 5090 is sold in US-CA-06 and EU-01: every instance mounting an EU-01 storage lands in EU-01,
    while those without one are spread over both (the choice is random, seeded)."""
    storage_id = create_storage(emu)
    mounted = [
        emu.create(productId="5090.16c92g", networkStorages=[{"Id": storage_id, "mountPoint": f"/d{n}"}])
        for n in range(6)
    ]
    assert {emu.get(i)["clusterId"] for i in mounted} == {EU}
    free = {emu.get(emu.create(productId="5090.16c92g"))["clusterId"] for _ in range(12)}
    assert free == {"1", EU}
    # The same with a CPU instance (cpu.4c8g is sold in US-CA-06 and EU-01).
    cpu = [
        emu.create(kind="cpu", productId="cpu.4c8g", gpuNum=None, rootfsSize=None, networkStorages=[{"Id": storage_id}])
        for _ in range(4)
    ]
    assert {emu.get(i)["clusterId"] for i in cpu} == {EU}


def test_a_full_storage_cluster_is_insufficient_resource(emu: Emulator) -> None:
    """Placement never leaves the storage's cluster for another with room: Novita must not either."""
    storage_id = create_storage(emu)
    emu.http.put("/_emulator/capacity", json={"clusterId": EU, "productId": "5090.16c92g", "gpus": 0})
    response = emu.api.post(
        "/gpu/instance/create", json=create_body(productId="5090.16c92g", networkStorages=[{"Id": storage_id}])
    )
    assert response.status_code == 400 and response.json()["reason"] == "INSUFFICIENT_RESOURCE", response.text


def test_mount_point_defaults_to_network(emu: Emulator) -> None:
    storage_id = create_storage(emu)
    instance_id = emu.create(productId="4090.16c62g.eu", networkStorages=[{"Id": storage_id}])
    assert emu.get(instance_id)["volumeMounts"][0]["mountPath"] == "/network"


def test_mounts_are_refused_elsewhere_or_unknown(emu: Emulator) -> None:
    storage_id = create_storage(emu)

    def refused(**overrides: Any) -> dict[str, Any]:
        response = emu.api.post("/gpu/instance/create", json=create_body(**overrides))
        assert response.status_code == 400, response.text
        body: dict[str, Any] = response.json()
        return body

    mounts = [{"Id": storage_id, "mountPoint": "/data"}]
    # No clusterId, and the product is not sold where the storage is (offered in US-CA-06 only).
    elsewhere = refused(productId="4090.16c62g", networkStorages=mounts)
    assert elsewhere["reason"] == "NETWORK_STORAGE_UNAVAILABLE" and "EU-01" in elsewhere["message"]
    # A clusterId other than the storage's (the product is sold in both).
    other_cluster = refused(productId="5090.16c92g", clusterId="1", networkStorages=mounts)
    assert other_cluster["reason"] == "NETWORK_STORAGE_UNAVAILABLE"
    assert "EU-01" in other_cluster["message"] and "US-CA-06" in other_cluster["message"]
    # A clusterId with no network storage at all.
    no_storage = refused(productId="4090.16c62g.sg", clusterId=SINGAPORE, networkStorages=mounts)
    assert no_storage["reason"] == "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT" and "EU-01" in no_storage["message"]
    assert refused(productId="5090.16c92g", clusterId="99", networkStorages=mounts)["reason"] == "VALIDATOR_PARAM"
    # The storage's own cluster, but a product not sold there: as without a storage.
    not_sold = refused(productId="4090.16c62g", clusterId=EU, networkStorages=mounts)
    assert not_sold["reason"] == "VALIDATOR_PARAM"
    unknown = refused(productId="4090.16c62g.eu", networkStorages=[{"Id": str(uuid.uuid4())}])
    assert unknown["reason"] == "NETWORK_STORAGE_NOT_FOUND"
    second = create_storage(emu, name="in-nl", cluster="4")
    both = refused(productId="l4.8c30g", networkStorages=[*mounts, {"Id": second, "mountPoint": "/nl"}])
    assert both["reason"] == "NETWORK_STORAGE_UNAVAILABLE"
    for bad in (
        [{"id": storage_id}],  # the documented key is Id
        [{"Id": storage_id}, {"Id": storage_id, "mountPoint": "/other"}],
        [{"Id": storage_id, "mountPoint": 5}],
        "not-a-list",
    ):
        assert refused(productId="4090.16c62g.eu", networkStorages=bad)["reason"] == "VALIDATOR_PARAM", bad
    assert emu.api.get("/gpu/instances").json()["total"] == 0


def test_delete_takes_novita_clis_id_key_too(emu: Emulator) -> None:
    storage_id = create_storage(emu)
    assert emu.api.post("/networkstorage/delete", json={"id": storage_id}).status_code == 200
    assert storages(emu)["total"] == 0


def storage_capacity(emu: Emulator) -> dict[str, dict[str, Any]]:
    body = ok_json(emu.http.get("/_emulator/storage-capacity"))
    return {c["clusterId"]: c for c in body["storageCapacity"]}


def set_storage_capacity(emu: Emulator, cluster: str, gb: int) -> dict[str, Any]:
    return ok_json(emu.http.put("/_emulator/storage-capacity", json={"clusterId": cluster, "gb": gb}))


def test_each_storage_cluster_has_a_seeded_capacity(emu: Emulator) -> None:
    capacity = storage_capacity(emu)
    assert SINGAPORE not in capacity  # no network storage there, so no capacity either
    assert {c: v["gb"] for c, v in capacity.items()} == {"1": 20480, "2": 10240, "3": 2048, "4": 5120, EU: 10240}
    assert capacity[EU] == {"clusterId": EU, "clusterName": "EU-01", "gb": 10240, "used": 0, "free": 10240}
    create_storage(emu, size=100)
    assert storage_capacity(emu)[EU] == {**capacity[EU], "used": 100, "free": 10140}


def test_a_create_beyond_what_is_left_is_too_large_and_a_delete_frees_it(emu: Emulator) -> None:
    assert set_storage_capacity(emu, EU, 100) == {
        "clusterId": EU,
        "clusterName": "EU-01",
        "gb": 100,
        "used": 0,
        "free": 100,
    }
    first = create_storage(emu, name="a", size=60)
    refused = emu.api.post("/networkstorage/create", json={"clusterId": EU, "storageName": "b", "storageSize": 50})
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["reason"] == "NETWORK_STORAGE_TOO_LARGE" and "40 GB" in body["message"]
    # Novita's console renders "Maximum storage(${0} GB) capacity exceeded" from the metadata.
    assert body["metadata"] == {"0": "40"}
    assert storages(emu)["total"] == 1
    create_storage(emu, name="other-cluster", size=50, cluster="4")  # another cluster has its own capacity

    assert emu.api.post("/networkstorage/delete", json={"storageId": first}).status_code == 200
    assert storage_capacity(emu)[EU]["free"] == 100
    create_storage(emu, name="b", size=100)  # all of it, now that the first is gone
    assert storage_capacity(emu)[EU] == {"clusterId": EU, "clusterName": "EU-01", "gb": 100, "used": 100, "free": 0}


def test_a_grow_beyond_what_is_left_is_too_large(emu: Emulator) -> None:
    set_storage_capacity(emu, EU, 100)
    storage_id = create_storage(emu, size=40)
    create_storage(emu, name="neighbour", size=30)

    def grow(size: int) -> Any:
        return emu.api.post(
            "/networkstorage/update", json={"storageId": storage_id, "storageName": "datasets", "storageSize": size}
        )

    too_much = grow(71)  # 31 GB more, 30 left
    assert too_much.status_code == 400 and too_much.json()["reason"] == "NETWORK_STORAGE_TOO_LARGE"
    assert too_much.json()["metadata"] == {"0": "30"}
    assert storages(emu, storageId=storage_id)["data"][0]["storageSize"] == 40
    assert grow(70).status_code == 200  # exactly what is left
    assert grow(70).status_code == 200  # the same size again needs nothing more
    assert storage_capacity(emu)[EU]["free"] == 0


def test_capacity_set_below_what_is_used_keeps_the_storages(emu: Emulator) -> None:
    storage_id = create_storage(emu, size=50)
    assert set_storage_capacity(emu, EU, 20)["free"] == 0
    assert storages(emu)["data"][0]["storageId"] == storage_id
    refused = emu.api.post("/networkstorage/create", json={"clusterId": EU, "storageName": "x", "storageSize": 10})
    assert refused.json()["reason"] == "NETWORK_STORAGE_TOO_LARGE"
    emu.http.post("/_emulator/reset")
    assert storage_capacity(emu)[EU]["gb"] == 10240  # reset brings the seeded capacity back


@pytest.mark.parametrize(
    "body",
    [
        {"clusterId": SINGAPORE, "gb": 100},
        {"clusterId": "99", "gb": 100},
        {"clusterId": EU, "gb": -1},
        {"clusterId": EU},
    ],
)
def test_storage_capacity_control_is_validated(emu: Emulator, body: dict[str, Any]) -> None:
    response = emu.http.put("/_emulator/storage-capacity", json=body)
    assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM", response.text
