"""Instance edit (ports, system disk) and the two readings of `node` in an instance's detail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.emulator.conftest import Emulator, ok_json


def edit(emu: Emulator, **body: Any) -> dict[str, Any]:
    return ok_json(emu.api.post("/gpu/instance/edit", json=body))


def test_edit_replaces_ports_and_grows_the_system_disk(emu: Emulator) -> None:
    instance_id = emu.create(rootfsSize=60)
    emu.advance(20)
    before = {m["port"]: m for m in emu.get(instance_id)["portMappings"]}
    assert (
        edit(emu, instanceId=instance_id, ports=[{"port": 8888, "type": "http"}, {"port": 7860, "type": "http"}]) == {}
    )
    after = emu.get(instance_id)
    assert [(m["port"], m["type"]) for m in after["portMappings"]] == [(8888, "http"), (7860, "http")]
    assert after["portMappings"][0]["endpoint"] == before[8888]["endpoint"]
    assert after["status"] == "running"
    assert emu.http.get(f"/_instances/{instance_id}/7860/").status_code == 200  # the new port is served

    edit(emu, instanceId=instance_id, expandRootDisk=40)
    grown = emu.get(instance_id)
    assert grown["rootfsSize"] == 100 and len(grown["portMappings"]) == 2  # absent ports: unchanged
    edit(emu, instanceId=instance_id, ports=[], expandRootDisk=0)
    assert emu.get(instance_id)["portMappings"] == []


def test_edit_is_validated(emu: Emulator) -> None:
    instance_id = emu.create(rootfsSize=60)
    max_rootfs = emu.get(instance_id)["node"]["maxRootfsSize"]
    for body, reason in (
        ({"instanceId": instance_id, "expandRootDisk": max_rootfs}, "VALIDATOR_PARAM"),
        ({"instanceId": instance_id, "expandRootDisk": -1}, "VALIDATOR_PARAM"),
        ({"instanceId": instance_id, "ports": [{"port": 2223, "type": "tcp"}]}, "VALIDATOR_PARAM"),
        ({"instanceId": instance_id, "ports": [{"port": "80", "type": "http"}]}, "VALIDATOR_PARAM"),
        ({"instanceId": instance_id, "ports": [{"port": p, "type": "tcp"} for p in range(1, 17)]}, "VALIDATOR_PARAM"),
        ({"expandRootDisk": 10}, "VALIDATOR_PARAM"),
        ({"instanceId": "0000000000000000", "expandRootDisk": 10}, "RESOURCE_NOT_FOUND"),
    ):
        response = emu.api.post("/gpu/instance/edit", json=body)
        assert (response.status_code, response.json()["reason"]) == (400, reason), body
    emu.action("delete", instance_id)
    deleting = emu.api.post("/gpu/instance/edit", json={"instanceId": instance_id, "expandRootDisk": 1})
    assert deleting.status_code == 400 and deleting.json()["message"] == "invalid state change"


def test_node_is_one_object_by_default(emu: Emulator) -> None:
    instance_id = emu.create(productId="a100.16c128g")
    assert emu.get(instance_id)["node"] == {"maxRootfsSize": 2000}


@pytest.mark.parametrize(
    ("shape", "expected"), [("list", [{"maxRootfsSize": 1000}]), ("object", {"maxRootfsSize": 1000})]
)
def test_node_shape_is_configurable(make_emulator: Callable[..., Emulator], shape: str, expected: object) -> None:
    emu = make_emulator(node_shape=shape)
    assert emu.get(emu.create())["node"] == expected
