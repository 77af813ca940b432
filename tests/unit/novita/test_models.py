"""Novita payloads parse with Novita's odd types, and secrets stay out of reprs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from novita_gpu.novita import (
    Cluster,
    CreateInstanceRequest,
    EnvVar,
    InstancePage,
    Job,
    JobPage,
    Listed,
    Migration,
    NetworkStorageMount,
    NetworkStoragePage,
    NovitaInstance,
    Product,
    RegistryAuth,
    Template,
    TemplatePage,
)

LIST_ITEM = {
    "id": "3560b7fec915bbf9",
    "name": "job-1",
    "clusterId": "5",
    "clusterName": "EU-01",
    "status": "running",
    "imageUrl": "pytorch/pytorch:latest",
    "imageAuthId": "",
    "command": "",
    "entrypoint": "",
    "cpuNum": "16",
    "memory": "62",
    "gpuNum": "2",
    "portMappings": [{"port": 8888, "type": "http"}, {"port": "22", "type": "tcp"}],
    "productId": "4090.16c62g",
    "productName": "RTX 4090 24GB",
    "rootfsSize": 60,
    "volumeMounts": [{"type": "local", "size": "100", "mountPath": "/data"}],
    "statusError": {"state": "", "message": ""},
    "envs": [{"key": "HF_TOKEN", "value": "hf_supersecret"}],
    "kind": "gpu",
    "billingMode": "onDemand",
    "endTime": "-1",
    "spotStatus": "",
    "spotReclaimTime": "0",
    "createdAt": "1711995567",
    "lastStartedAt": "",
    "someFutureField": {"x": 1},
}


def test_instance_list_item_with_string_numbers() -> None:
    instance = NovitaInstance.model_validate(LIST_ITEM)
    assert (instance.gpu_num, instance.cpu_num, instance.memory, instance.rootfs_size) == (2, 16, 62, 60)
    assert [(p.port, p.type, p.endpoint) for p in instance.port_mappings] == [
        (8888, "http", None),
        (22, "tcp", None),
    ]
    assert instance.status_error is None
    assert instance.spot_reclaim_time == 0
    assert instance.end_time is None
    assert instance.created_at == datetime(2024, 4, 1, 18, 19, 27, tzinfo=UTC)
    assert instance.last_started_at is None
    assert instance.envs == [EnvVar(key="HF_TOKEN", value="hf_supersecret")]


def test_instance_get_payload_with_connect_components_and_errors() -> None:
    payload = {
        **LIST_ITEM,
        "status": "exited",
        "portMappings": [{"port": 8888, "type": "http", "endpoint": "https://abc-8888.proxy.novita.ai"}],
        "statusError": {"state": "failed", "message": "image pull failed"},
        "spotStatus": "terminated",
        "spotReclaimTime": "1711999999",
        "billingMode": "spot",
        "connectComponentSSH": {
            "sshCommand": "ssh root@1.2.3.4 -p 3022",
            "password": "sshpw",
            "isRunning": True,
        },
        "connectComponentJupyter": {"port": "8888", "address": "https://j", "isRunning": "true"},
        "connectComponentWebTerminal": {"address": "https://t", "username": "root", "password": "termpw"},
    }
    instance = NovitaInstance.model_validate(payload)
    assert instance.port_mappings[0].endpoint == "https://abc-8888.proxy.novita.ai"
    assert instance.status_error is not None
    assert (instance.status_error.state, instance.status_error.message) == ("failed", "image pull failed")
    assert (instance.spot_status, instance.spot_reclaim_time) == ("terminated", 1711999999)
    assert instance.connect_component_ssh is not None
    assert instance.connect_component_ssh.password == "sshpw"
    assert instance.connect_component_ssh.is_running is True
    assert instance.connect_component_jupyter is not None
    assert instance.connect_component_jupyter.port == 8888
    assert instance.connect_component_web_terminal is not None
    text = repr(instance) + str(instance)
    for secret in ("sshpw", "termpw", "hf_supersecret"):
        assert secret not in text


def test_instance_tolerates_nulls_empties_and_missing_fields() -> None:
    instance = NovitaInstance.model_validate(
        {
            "id": "a",
            "gpuNum": "",
            "cpuNum": None,
            "billingMode": None,
            "portMappings": None,
            "envs": None,
            "statusError": None,
            "connectComponentSSH": {},
            "spotReclaimTime": "",
            "endTime": "1771113600",
        }
    )
    assert (instance.gpu_num, instance.cpu_num, instance.billing_mode) == (0, 0, "")
    assert instance.port_mappings == [] and instance.envs == []
    assert instance.status_error is None and instance.connect_component_ssh is None
    assert instance.end_time == datetime.fromtimestamp(1771113600, UTC)


def test_malformed_numbers_are_rejected_not_zeroed() -> None:
    with pytest.raises(ValidationError):
        Product.model_validate({"id": "p", "price": "cheap"})


def test_product_prices_and_regions() -> None:
    product = Product.model_validate(
        {
            "id": "4090.16c62g",
            "name": "RTX 4090 24GB",
            "cpuPerGpu": 16,
            "memoryPerGpu": "62",
            "availableDeploy": True,
            "minRootFS": 10,
            "maxRootFS": 1000,
            "regions": ["US-CA-06 (California)", "EU-01", {}],
            "price": 35000,
            "spotPrice": "17500",
            "monthlyPrice": [{"price": 20000000, "month": 1}],
            "billingMethods": ["onDemand", "spot"],
            "inventoryState": "normal",
        }
    )
    assert product.regions == ["US-CA-06", "EU-01"]
    assert product.region_labels == ["US-CA-06 (California)", "EU-01"]
    assert (product.min_root_fs, product.max_root_fs, product.memory_per_gpu) == (10, 1000, 62)
    assert product.price_per_gpu_hour_usd("onDemand") == pytest.approx(0.35)
    assert product.price_per_gpu_hour_usd("spot") == pytest.approx(0.175)
    with pytest.raises(ValueError, match="billing mode"):
        product.price_per_gpu_hour_usd("weekly")


def test_product_regions_rendered_as_object_mean_none() -> None:
    assert Product.model_validate({"id": "p", "regions": {}}).regions == []


def test_cluster_fields() -> None:
    cluster = Cluster.model_validate(
        {"id": 5, "name": "EU-01", "availableGpuType": ["RTX 4090 24GB"], "supportNetworkStorage": True}
    )
    assert (cluster.id, cluster.available_gpu_types) == ("5", ["RTX 4090 24GB"])
    assert cluster.support_network_storage is True and cluster.support_instance_network is False


def test_template_id_capital_or_lower_and_ports() -> None:
    upper = Template.model_validate({"Id": "212", "ports": [{"type": "http", "ports": ["8888", 80]}]})
    lower = Template.model_validate({"id": 7, "envs": [{"key": "A", "value": "secret-a"}], "createdAt": "1711995567"})
    assert upper.id == "212" and upper.ports[0].ports == [8888, 80]
    assert lower.id == "7" and lower.created_at is not None
    assert "secret-a" not in repr(lower)
    page = TemplatePage.model_validate({"template": [{"Id": "1"}], "total": "3"})
    assert [t.id for t in page.templates] == ["1"] and page.total == 3


def test_registry_auth_repr_hides_password() -> None:
    auth = RegistryAuth.model_validate({"id": "x", "name": "n", "username": "u", "password": "p@ss-w0rd"})
    assert auth.password == "p@ss-w0rd"
    assert "p@ss-w0rd" not in repr(auth) and "p@ss-w0rd" not in str(auth)


def test_instance_page_total_as_string() -> None:
    page = InstancePage.model_validate({"instances": None, "total": "0"})
    assert page.instances == [] and page.total == 0


def create_request(**fields: Any) -> CreateInstanceRequest:
    """ng-abc: one GPU of 4090.16c62g, a 60 GB system disk, image img:1; `fields` add to or replace these."""
    return CreateInstanceRequest(
        **{
            "name": "ng-abc",
            "product_id": "4090.16c62g",
            "gpu_num": 1,
            "rootfs_size": 60,
            "image_url": "img:1",
            **fields,
        }
    )


def test_create_request_serialises_with_novita_names() -> None:
    request = create_request(
        cluster_id="5",
        image_auth="user:regpass",
        ports="8888/http,22/tcp",
        envs=[EnvVar(key="TOKEN", value="envsecret")],
        command="python serve.py",
    )
    assert request.to_payload() == {
        "name": "ng-abc",
        "productId": "4090.16c62g",
        "gpuNum": 1,
        "rootfsSize": 60,
        "imageUrl": "img:1",
        "kind": "gpu",
        "clusterId": "5",
        "imageAuth": "user:regpass",
        "ports": "8888/http,22/tcp",
        "envs": [{"key": "TOKEN", "value": "envsecret"}],
        "command": "python serve.py",
        "billingMode": "onDemand",
    }
    assert "envsecret" not in repr(request) and "regpass" not in repr(request)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ([{"maxRootfsSize": 2000}], 2000),  # the reference: an array of one
        ({"maxRootfsSize": "2000", "maxLocalVolumeSize": 100}, 2000),  # the console and typed clients: one object
        ([], None),
        ({}, None),
        (None, None),
    ],
)
def test_node_is_read_as_one_object_from_either_shape(node: object, expected: int | None) -> None:
    instance = NovitaInstance.model_validate({**LIST_ITEM, "node": node})
    assert (instance.node.max_rootfs_size if instance.node else None) == expected


def test_volume_mounts_take_size_as_string_or_number() -> None:
    mounts = [
        {"type": "network", "size": "50", "id": "d4e82677-3f80-4020-a731-d15b1c589aa8", "mountPath": "/data"},
        {"type": "local", "size": 100, "mountPath": "/local"},
    ]
    instance = NovitaInstance.model_validate({**LIST_ITEM, "volumeMounts": mounts})
    assert [(m.type, m.size, m.id, m.mount_path) for m in instance.volume_mounts] == [
        ("network", 50, "d4e82677-3f80-4020-a731-d15b1c589aa8", "/data"),
        ("local", 100, "", "/local"),
    ]


def test_create_request_sends_image_auth_id_and_network_storages_as_documented() -> None:
    request = create_request(
        image_url="registry.example.com/app:1",
        image_auth_id="75irlsvvsehnqdajg2r481mjk54ecodc",
        network_storages=[
            NetworkStorageMount(id="vol-1", mount_point="/data"),
            NetworkStorageMount.model_validate({"Id": "vol-2"}),
        ],
    )
    payload = request.to_payload()
    assert payload["imageAuthId"] == "75irlsvvsehnqdajg2r481mjk54ecodc"
    assert payload["networkStorages"] == [
        {"Id": "vol-1", "mountPoint": "/data"},
        {"Id": "vol-2", "mountPoint": "/network"},
    ]
    assert (
        "networkStorages"
        not in CreateInstanceRequest(name="n", product_id="p", gpu_num=1, rootfs_size=10, image_url="i").to_payload()
    )


def test_network_storage_page() -> None:
    page = NetworkStoragePage.model_validate(
        {
            "data": [
                {
                    "storageId": "d4e8",
                    "storageName": "123",
                    "storageSize": 10,
                    "clusterId": "5",
                    "clusterName": "EU-01",
                    "price": "100",
                }
            ],
            "total": "1",
        }
    )
    [storage] = page.storages
    assert (storage.id, storage.storage_size, storage.cluster_name, storage.price, page.total) == (
        "d4e8",
        10,
        "EU-01",
        100,
        1,
    )


def test_listed_carries_the_spot_fields_of_a_notice() -> None:
    item = {**LIST_ITEM, "billingMode": "spot", "spotStatus": "notified", "spotReclaimTime": "1711999999"}
    listed = Listed.parse(item)
    assert (listed.status, listed.spot_status, listed.spot_reclaim_time) == ("running", "notified", 1711999999)
    assert listed.spot_notified and listed.spot_reclaimed
    assert Listed.of(NovitaInstance.model_validate(item)) == listed
    plain = Listed.parse(LIST_ITEM)
    assert (plain.spot_status, plain.spot_reclaim_time, plain.spot_notified, plain.spot_reclaimed) == (
        "",
        0,
        False,
        False,
    )


def test_listed_built_from_its_first_five_fields_still_works() -> None:
    """The shared listing stores and rebuilds `Listed` from id, name, status, error and reclaimed only."""
    listed = Listed("a", "job-1", "exited", "", True)
    assert (listed.spot_status, listed.spot_reclaim_time, listed.spot_notified) == ("", 0, False)


def test_job_state_is_read_from_its_nested_object() -> None:
    job = Job.model_validate(
        {
            "Id": "10wi9visv0rqt57w",
            "user": "u-1",
            "type": "instanceMigrate",
            "envs": [{"key": "K", "value": "secret"}],
            "state": {"state": "fail", "error": "MIGRATE_FAILED", "errorMessage": "no node"},
            "logAddress": "",
            "createdAt": "1711995567",
            "updateAt": "1711995600",
            "instanceId": "3560b7fec915bbf9",
            "someFutureField": 1,
        }
    )
    assert (job.id, job.type, job.state, job.error, job.error_message) == (
        "10wi9visv0rqt57w",
        "instanceMigrate",
        "fail",
        "MIGRATE_FAILED",
        "no node",
    )
    assert job.created_at == datetime.fromtimestamp(1711995567, UTC)
    assert job.updated_at == datetime.fromtimestamp(1711995600, UTC)
    assert (job.instance_id, job.finished, job.succeeded) == ("3560b7fec915bbf9", True, False)
    assert "secret" not in repr(job)


@pytest.mark.parametrize(
    ("payload", "state"),
    [({"id": "j", "state": "success"}, "success"), ({"id": "j", "state": None}, ""), ({"id": "j"}, "")],
)
def test_job_tolerates_a_bare_or_missing_state(payload: dict[str, Any], state: str) -> None:
    job = Job.model_validate(payload)
    assert (job.id, job.state, job.error, job.created_at, job.updated_at) == ("j", state, "", None, None)


def test_job_page() -> None:
    page = JobPage.model_validate({"jobs": [{"Id": "a", "state": {"state": "running"}}], "total": "3"})
    assert ([j.id for j in page.items], page.total, page.jobs[0].finished) == (["a"], 3, False)
    assert JobPage.model_validate({"jobs": None}).items == []


@pytest.mark.parametrize(
    ("payload", "moved_to"),
    [
        ({"instanceId": "a", "state": "migrating", "jobId": "j"}, "a"),
        ({"instanceId": "a", "newInstanceId": "b", "message": "ok"}, "b"),
        ({}, ""),
    ],
)
def test_migration_answer(payload: dict[str, Any], moved_to: str) -> None:
    assert Migration.model_validate(payload).moved_to == moved_to
