"""Auth, Novita's error envelope for every failure, create validation and list pagination."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.emulator.conftest import API, Emulator, create_body


def assert_envelope(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "reason", "message", "metadata"}
    assert body["code"] == status and body["reason"] == reason and body["metadata"] == {}
    assert isinstance(body["message"], str) and body["message"]
    return body


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}]
)
def test_missing_or_malformed_key_is_unauthorized(emu: Emulator, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/clusters"), ("GET", "/gpu/instances"), ("POST", "/gpu/instance/create")):
        response = emu.http.request(method, API + path, headers=headers, json={})
        assert_envelope(response, 401, "UNAUTHORIZED")


def test_configured_keys_are_the_only_valid_ones(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(api_keys=["sk_good"])
    assert_envelope(emu.api.get("/clusters"), 401, "UNAUTHORIZED")  # the fixture's key is not configured
    response = emu.http.get(API + "/clusters", headers={"Authorization": "Bearer sk_good"})
    assert response.status_code == 200
    assert "sk_good" not in repr(emu.http.get("/_emulator/faults").json())


def test_unknown_route_and_wrong_method(emu: Emulator) -> None:
    assert_envelope(emu.api.get("/no/such/thing"), 404, "NOT_FOUND")
    assert_envelope(emu.api.get("/gpu/instance/create"), 405, "METHOD_NOT_ALLOWED")


def test_malformed_json_and_non_object_bodies(emu: Emulator) -> None:
    for content in (b"{", b"[1, 2]", b""):
        response = emu.api.post("/gpu/instance/create", content=content, headers={"Content-Type": "application/json"})
        assert_envelope(response, 400, "CODEC")
    assert_envelope(emu.api.post("/gpu/instance/stop", content=b"nope"), 400, "CODEC")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"productId": None}, "VALIDATOR_PARAM"),
        ({"productId": "no.such.product"}, "VALIDATOR_PARAM"),
        ({"imageUrl": None}, "VALIDATOR_PARAM"),
        ({"imageUrl": "x" * 501}, "VALIDATOR_PARAM"),
        ({"kind": None}, "VALIDATOR_PARAM"),
        ({"kind": "tpu"}, "VALIDATOR_PARAM"),
        ({"gpuNum": None}, "VALIDATOR_PARAM"),
        ({"gpuNum": 0}, "VALIDATOR_PARAM"),
        ({"gpuNum": 9}, "VALIDATOR_PARAM"),
        ({"gpuNum": "1"}, "VALIDATOR_PARAM"),
        ({"gpuNum": True}, "VALIDATOR_PARAM"),
        ({"rootfsSize": None}, "VALIDATOR_PARAM"),
        ({"rootfsSize": 5000}, "VALIDATOR_PARAM"),  # above the product's maxRootFS
        ({"name": 7}, "VALIDATOR_PARAM"),
        ({"name": "n" * 256}, "VALIDATOR_PARAM"),
        ({"ports": "2222/tcp"}, "VALIDATOR_PARAM"),
        ({"ports": "70000/http"}, "VALIDATOR_PARAM"),
        ({"ports": "80/udp"}, "VALIDATOR_PARAM"),
        ({"ports": "80/http, 80/tcp"}, "VALIDATOR_PARAM"),
        ({"ports": ", ".join(f"{8000 + i}/http" for i in range(16))}, "VALIDATOR_PARAM"),
        (
            {
                "ports": ", ".join(f"{8000 + i}/http" for i in range(15)),
                "tools": [{"name": "Jupyter", "port": "9999", "type": "http"}],
            },
            "VALIDATOR_PARAM",
        ),
        ({"envs": [{"key": "A", "value": 1}]}, "VALIDATOR_PARAM"),
        ({"envs": [{"key": "K", "value": "v"}] * 101}, "VALIDATOR_PARAM"),
        ({"billingMode": "free"}, "VALIDATOR_PARAM"),
        ({"billingMode": "monthly"}, "VALIDATOR_PARAM"),  # monthly without month
        ({"productId": "a6000.10c45g", "billingMode": "spot"}, "UNSUPPORTED_BILLING_MODE"),
        ({"clusterId": "99"}, "VALIDATOR_PARAM"),
        ({"clusterId": "5"}, "VALIDATOR_PARAM"),  # 4090.16c62g is offered in US-CA-06 only
        ({"imageAuthId": "unknown"}, "VALIDATOR_PARAM"),
        ({"networkStorages": [{"Id": "x", "mountPoint": "/network"}]}, "NETWORK_STORAGE_NOT_FOUND"),
    ],
)
def test_create_validation(emu: Emulator, overrides: dict[str, Any], reason: str) -> None:
    assert_envelope(emu.api.post("/gpu/instance/create", json=create_body(**overrides)), 400, reason)
    assert emu.api.get("/gpu/instances").json()["total"] == 0


def test_create_normalises_what_novita_normalises(emu: Emulator) -> None:
    auth_id = emu.api.get("/repository/auths").json()["data"][0]["id"]
    instance_id = emu.create(
        rootfsSize=3, month=1, imageAuthId=auth_id, tools=[{"name": "Jupyter", "port": "8889", "type": "http"}]
    )
    instance = emu.get(instance_id)
    assert instance["rootfsSize"] == 10  # values under 10 are raised to 10
    assert instance["billingMode"] == "monthly"  # month > 0 forces monthly
    assert int(instance["endTime"]) == int(instance["createdAt"]) + 30 * 24 * 3600
    assert instance["imageAuthId"] == auth_id
    assert [m["port"] for m in instance["portMappings"]] == [8888, 22, 8889]
    delete = emu.action("delete", instance_id)
    assert_envelope(delete, 400, "PREPAID_INSTANCE_NOT_SUPPORT_RELEASE")


def test_cpu_instance(emu: Emulator) -> None:
    instance_id = emu.create(kind="cpu", productId="cpu.4c8g", gpuNum=None, rootfsSize=None)
    instance = emu.get(instance_id)
    assert (instance["kind"], instance["gpuNum"], instance["cpuNum"], instance["memory"]) == ("cpu", "0", "4", "8")


@pytest.mark.parametrize("action", ["start", "stop", "restart", "delete"])
def test_actions_need_an_existing_instance_id(emu: Emulator, action: str) -> None:
    assert_envelope(emu.api.post(f"/gpu/instance/{action}", json={}), 400, "VALIDATOR_PARAM")
    assert_envelope(emu.action(action, "0123456789abcdef"), 400, "RESOURCE_NOT_FOUND")


def test_get_needs_an_existing_instance_id(emu: Emulator) -> None:
    assert_envelope(emu.api.get("/gpu/instance"), 400, "VALIDATOR_PARAM")
    assert_envelope(emu.api.get("/gpu/instance", params={"instanceId": "nope"}), 400, "RESOURCE_NOT_FOUND")


def test_not_found_status_is_configurable(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(not_found_status=404)
    assert_envelope(emu.api.get("/gpu/instance", params={"instanceId": "nope"}), 404, "RESOURCE_NOT_FOUND")
    assert_envelope(emu.action("stop", "nope"), 404, "RESOURCE_NOT_FOUND")


def test_list_item_fields_and_types(emu: Emulator) -> None:
    instance_id = emu.create(billingMode="spot")
    [item] = emu.api.get("/gpu/instances").json()["instances"]
    assert item["id"] == instance_id
    for key in ("cpuNum", "memory", "gpuNum", "endTime", "spotReclaimTime", "createdAt"):
        assert isinstance(item[key], str) and item[key].lstrip("-").isdigit(), key
    assert (item["endTime"], item["spotReclaimTime"], item["spotStatus"]) == ("-1", "0", "running")
    assert type(item["rootfsSize"]) is int
    assert item["portMappings"] == [{"port": 8888, "type": "http"}, {"port": 22, "type": "tcp"}]
    assert item["envs"] == [{"key": "A", "value": "1"}]
    assert item["statusError"] == {"state": "", "message": ""}
    on_demand = emu.get(emu.create())
    assert on_demand["spotStatus"] == "" and on_demand["billingMode"] == "onDemand"


def test_list_pagination_and_filters(emu: Emulator) -> None:
    ids = [emu.create(name=f"job-{i}") for i in range(12)]
    other = emu.create(name="other", productId="3090.16c92g")
    first = emu.api.get("/gpu/instances").json()
    assert first["total"] == 13 and len(first["instances"]) == 10  # pageSize 0/absent means 10
    assert [i["id"] for i in first["instances"]][:2] == [other, ids[-1]]  # newest first
    pages = [
        emu.api.get("/gpu/instances", params={"pageSize": 5, "pageNum": n, "name": "JOB"}).json() for n in (0, 2, 3)
    ]
    assert [p["total"] for p in pages] == [12, 12, 12]
    seen = [i["id"] for p in pages for i in p["instances"]]
    assert sorted(seen) == sorted(ids)
    page_one = emu.api.get("/gpu/instances", params={"pageSize": 5, "pageNum": 1, "name": "JOB"}).json()
    assert page_one == pages[0]  # pageNum 0 and 1 are both the first page
    by_product = emu.api.get("/gpu/instances", params={"productName": "3090"}).json()
    assert [i["name"] for i in by_product["instances"]] == ["other"]
    emu.advance(10)
    emu.action("stop", ids[0])
    stopping = emu.api.get("/gpu/instances", params={"status": "toStop"}).json()
    assert [i["id"] for i in stopping["instances"]] == [ids[0]]


@pytest.mark.parametrize("params", [{"pageSize": 101}, {"pageSize": -1}, {"pageNum": "x"}, {"status": "sleeping"}])
def test_list_rejects_bad_query_values(emu: Emulator, params: dict[str, Any]) -> None:
    assert_envelope(emu.api.get("/gpu/instances", params=params), 400, "VALIDATOR_PARAM")
