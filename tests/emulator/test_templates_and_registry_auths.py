"""Private templates and registry auths, driven as an outside client does (plain HTTP, documented bodies)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.conftest import Emulator, create_body

# What Novita's own CLI creates in its end-to-end test against the real service.
MINIMAL = {"name": "cli-e2e-test", "type": "instance", "channel": "private", "image": "pytorch/pytorch:latest"}


def private_templates(emu: Emulator) -> list[dict[str, Any]]:
    response = emu.api.get("/templates", params={"channel": "private", "isMyCommunity": "true", "pageSize": 100})
    assert response.status_code == 200, response.text
    templates: list[dict[str, Any]] = response.json()["template"]
    return templates


def auths(emu: Emulator) -> list[dict[str, Any]]:
    response = emu.api.get("/repository/auths")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_private_template_create_get_list_update_delete(emu: Emulator) -> None:
    created = emu.api.post("/template/create", json={"template": {**MINIMAL, "rootfsSize": 10}})
    assert created.status_code == 200, created.text
    template_id = created.json()["templateId"]
    assert isinstance(template_id, str) and template_id.isdigit()

    got = emu.api.get("/template", params={"templateId": template_id}).json()["template"]
    assert (got["Id"], got["name"], got["image"], got["channel"]) == (
        template_id,
        "cli-e2e-test",
        "pytorch/pytorch:latest",
        "private",
    )
    assert got["createdAt"].isdigit() and got["ports"] == [] and got["envs"] == []
    assert template_id in {t["Id"] for t in private_templates(emu)}
    public = emu.api.get("/templates", params={"channel": "official,community", "isMyCommunity": "false"}).json()
    assert template_id not in {t["Id"] for t in public["template"]}

    [auth, *_] = auths(emu)
    full = {
        **MINIMAL,
        "Id": template_id,
        "name": "renamed",
        "readme": "# mine",
        "imageAuth": auth["id"],
        "startCommand": "python serve.py",
        "entrypoint": "/bin/sh -c",
        "rootfsSize": 80,
        "ports": [{"type": "http", "ports": [8080, 8081]}, {"type": "tcp", "ports": [22]}],
        "envs": [{"key": "MODE", "value": "prod"}],
        "minCudaVersion": "12.4",
    }
    updated = emu.api.post("/template/update", json={"template": full})
    assert updated.status_code == 200 and updated.json() == {"templateId": template_id}
    got = emu.api.get("/template", params={"templateId": template_id}).json()["template"]
    assert {k: got[k] for k in full if k != "Id"} == {k: v for k, v in full.items() if k != "Id"}

    deleted = emu.api.post("/template/delete", json={"templateId": template_id})
    assert deleted.status_code == 200 and deleted.json() == {"templateId": template_id}
    assert template_id not in {t["Id"] for t in private_templates(emu)}
    gone = emu.api.get("/template", params={"templateId": template_id})
    assert gone.status_code == 400 and gone.json()["reason"] == "TEMPLATE_NOT_FOUND"
    again = emu.api.post("/template/delete", json={"templateId": template_id})
    assert again.status_code == 400 and again.json()["reason"] == "TEMPLATE_NOT_FOUND"


def test_new_template_ids_are_never_reused(emu: Emulator) -> None:
    body = {"template": {**MINIMAL, "rootfsSize": 10}}
    first = emu.api.post("/template/create", json=body).json()["templateId"]
    emu.api.post("/template/delete", json={"templateId": first})
    second = emu.api.post("/template/create", json=body).json()["templateId"]
    assert int(second) > int(first)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ({**MINIMAL}, "rootfsSize"),
        ({**MINIMAL, "rootfsSize": 0}, "rootfsSize"),
        ({**MINIMAL, "rootfsSize": "10"}, "rootfsSize"),
        ({**MINIMAL, "rootfsSize": 10, "channel": "official"}, "channel"),
        ({**MINIMAL, "rootfsSize": 10, "type": "serverless"}, "type"),
        ({**MINIMAL, "rootfsSize": 10, "name": ""}, "name"),
        ({**MINIMAL, "rootfsSize": 10, "image": "x" * 501}, "image"),
        ({**MINIMAL, "rootfsSize": 10, "imageAuth": "not-an-auth"}, "imageAuth"),
        ({**MINIMAL, "rootfsSize": 10, "ports": [{"type": "udp", "ports": [53]}]}, "ports"),
        ({**MINIMAL, "rootfsSize": 10, "ports": [{"type": "tcp", "ports": [2222]}]}, "reserved"),
        ({**MINIMAL, "rootfsSize": 10, "ports": [{"type": "tcp", "ports": list(range(1, 12))}]}, "at most 10"),
        ({**MINIMAL, "rootfsSize": 10, "minCudaVersion": "twelve"}, "minCudaVersion"),
    ],
)
def test_template_bodies_are_validated(emu: Emulator, template: dict[str, Any], fragment: str) -> None:
    response = emu.api.post("/template/create", json={"template": template})
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "VALIDATOR_PARAM" and fragment in response.json()["message"]


def test_template_writes_need_the_template_object_and_an_own_template(emu: Emulator) -> None:
    assert emu.api.post("/template/create", json=MINIMAL).json()["reason"] == "VALIDATOR_PARAM"
    assert emu.api.post("/template/create", content=b"[1]").json()["reason"] == "CODEC"
    official = {**MINIMAL, "Id": "101", "rootfsSize": 10}
    for path, body in (("/template/update", {"template": official}), ("/template/delete", {"templateId": "101"})):
        response = emu.api.post(path, json=body)
        assert response.status_code == 400 and response.json()["reason"] == "TEMPLATE_NOT_FOUND", path
    assert emu.api.get("/template", params={"templateId": "101"}).status_code == 200


def test_registry_auth_save_list_use_and_delete(emu: Emulator) -> None:
    before = {a["id"] for a in auths(emu)}
    saved = emu.api.post("/repository/auth/save", json={"name": "hub", "username": "me", "password": "s3cret"})
    assert saved.status_code == 200 and saved.json() == {}
    [new] = [a for a in auths(emu) if a["id"] not in before]
    assert (new["name"], new["username"], new["password"]) == ("hub", "me", "s3cret")
    assert len(new["id"]) == 32 and new["id"].isalnum() and new["id"].islower()
    # Names may repeat, as in Novita's own example.
    emu.api.post("/repository/auth/save", json={"name": "hub", "username": "me", "password": "other"})
    assert [a["name"] for a in auths(emu)].count("hub") == 2

    instance_id = emu.create(imageAuthId=new["id"], imageUrl="registry.example.com/team/app:1")
    assert emu.get(instance_id)["imageAuthId"] == new["id"]
    in_use = emu.api.post("/repository/auth/delete", json={"id": new["id"]})
    assert in_use.status_code == 400 and in_use.json()["reason"] == "IMAGE_AUTH_IN_USE"

    emu.action("delete", instance_id)
    assert emu.api.post("/repository/auth/delete", json={"id": new["id"]}).json() == {}
    assert new["id"] not in {a["id"] for a in auths(emu)}
    unknown = emu.api.post("/repository/auth/delete", json={"id": new["id"]})
    assert unknown.status_code == 400 and unknown.json()["reason"] == "RESOURCE_NOT_FOUND"
    refused = emu.api.post("/gpu/instance/create", json={**create_body(), "imageAuthId": new["id"]})
    assert refused.status_code == 400 and "imageAuthId" in refused.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "me", "password": "pw"},
        {"name": "hub", "password": "pw"},
        {"name": "hub", "username": "me"},
        {"name": "hub", "username": "me", "password": 5},
        {"name": "x" * 256, "username": "me", "password": "pw"},
    ],
)
def test_registry_auth_bodies_are_validated(emu: Emulator, body: dict[str, Any]) -> None:
    response = emu.api.post("/repository/auth/save", json=body)
    assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM"
