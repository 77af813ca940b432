"""Create through our API with a registry auth and a network storage, end to end against the emulator:
our client makes both in Novita, the service stores them on the row, shows them, and sends them at create."""

from __future__ import annotations

from typing import Any

import pytest

from novita_gpu.instances.schemas import CreatedAnswer, InstanceAnswer
from tests.harness import Harness

EU = "EU-01"  # cluster 5: offers an RTX 4090 and supports network storage


async def novita_objects(harness: Harness) -> tuple[str, str]:
    """A registry auth and a network storage in EU-01, made with our own Novita client."""
    client = harness.services.client
    auth = await client.create_registry_auth("team-registry", "ci-bot", "registry-secret")
    storage_id = await client.create_network_storage("5", "datasets", 50)
    return auth.id, storage_id


async def test_create_with_registry_auth_and_network_storage(harness: Harness) -> None:
    auth_id, storage_id = await novita_objects(harness)
    created = await harness.create(
        region=EU,
        strictRegion=True,
        imageAuthId=auth_id,
        networkStorages=[{"id": storage_id, "mountPoint": "/data"}],
    )
    assert created["imageAuthId"] == auth_id
    assert created["networkStorages"] == [{"id": storage_id, "mountPoint": "/data"}]
    CreatedAnswer.model_validate(created)  # /openapi.json documents both fields

    ready = await harness.until_status(created["instanceId"], "ready")
    assert ready["region"] == EU and ready["networkStorages"] == created["networkStorages"]
    InstanceAnswer.model_validate(ready)
    truth = harness.emulator.get(f"/_emulator/instances/{ready['novitaInstanceId']}").json()
    assert truth["imageAuthId"] == auth_id
    assert truth["networkStorages"] == [{"id": storage_id, "mountPoint": "/data"}]
    upstream = await harness.services.client.get_instance(ready["novitaInstanceId"])
    assert [(m.type, m.id, m.mount_path, m.size) for m in upstream.volume_mounts] == [
        ("network", storage_id, "/data", 50)
    ]
    assert upstream.node is not None and upstream.node.max_rootfs_size > 0


async def test_mount_point_defaults_to_network(harness: Harness) -> None:
    _, storage_id = await novita_objects(harness)
    created = await harness.create(region=EU, strictRegion=True, networkStorages=[{"id": storage_id}])
    assert created["networkStorages"] == [{"id": storage_id, "mountPoint": "/network"}]
    ready = await harness.until_status(created["instanceId"], "ready")
    truth = harness.emulator.get(f"/_emulator/instances/{ready['novitaInstanceId']}").json()
    assert truth["networkStorages"] == [{"id": storage_id, "mountPoint": "/network"}]


async def test_without_them_nothing_is_mounted(harness: Harness) -> None:
    created = await harness.create()
    assert created["imageAuthId"] is None and created["networkStorages"] == []
    ready = await harness.until_status(created["instanceId"], "ready")
    truth = harness.emulator.get(f"/_emulator/instances/{ready['novitaInstanceId']}").json()
    assert truth["networkStorages"] == [] and truth["imageAuthId"] == ""


async def test_a_storage_in_another_region_fails_the_instance_with_novitas_reason(harness: Harness) -> None:
    """The cheapest RTX 4090 is not in the storage's cluster: Novita refuses, and the instance says why."""
    _, storage_id = await novita_objects(harness)
    created = await harness.create(networkStorages=[{"id": storage_id}])
    failed = await harness.until_status(created["instanceId"], "failed")
    assert failed["statusReason"] == "UPSTREAM_ERROR" and "EU-01" in failed["statusMessage"]
    assert harness.live_upstream() == []


@pytest.mark.parametrize(
    "body",
    [
        {"networkStorages": [{"mountPoint": "/data"}]},
        {"networkStorages": [{"id": "", "mountPoint": "/data"}]},
        {"networkStorages": [{"id": "vol", "mountPoint": "data"}]},
        {"networkStorages": [{"id": "vol", "Id": "vol"}]},
        {"networkStorages": [{"id": "vol"}] * 31},
        {"networkStorages": "vol"},
        {"imageAuthId": ""},
        {"imageAuthId": 5},
    ],
)
async def test_bad_values_are_400(harness: Harness, body: dict[str, Any]) -> None:
    payload = {"name": "bad", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter", **body}
    response = await harness.http.post("/api/instances", json=payload)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
