"""Image prewarm tasks: create, list (states move with the clock), quota, edit and delete."""

from __future__ import annotations

from typing import Any

from tests.emulator.conftest import Emulator, ok_json


def tasks(emu: Emulator, **params: Any) -> dict[str, Any]:
    return ok_json(emu.api.get("/image/prewarm", params=params))


def prewarm(emu: Emulator, **body: Any) -> str:
    response = emu.api.post("/image/prewarm", json={"imageUrl": "ghcr.io/team/app:1.2", "clusterId": "1", **body})
    assert response.status_code == 200, response.text
    task_id: str = response.json()["id"]
    return task_id


def test_a_task_goes_pending_running_succeeded(emu: Emulator) -> None:
    auth = emu.api.get("/repository/auths").json()["data"][0]["id"]
    task_id = prewarm(emu, repositoryAuth=auth, productIds=["4090.16c62g", "3090.16c92g"], note="nightly")
    [task] = tasks(emu)["data"]
    assert task["id"] == task_id and task["state"] == "Pending"
    assert (task["imageName"], task["imageUrl"], task["repositoryAuth"]) == ("app", "ghcr.io/team/app:1.2", auth)
    assert (task["clusterId"], task["clusterName"], task["note"], task["reason"]) == ("1", "US-CA-06", "nightly", [])
    assert task["products"] == [
        {"productId": "4090.16c62g", "productName": "RTX 4090 24GB"},
        {"productId": "3090.16c92g", "productName": "RTX 3090 24GB"},
    ]
    assert task["imageSize"].isdigit() and task["createTime"].isdigit() and task["completeTime"] == "0"
    emu.advance(2)
    assert tasks(emu)["data"][0]["state"] == "Running"
    emu.advance(30)
    done = tasks(emu)["data"][0]
    assert done["state"] == "Succeeded" and int(done["completeTime"]) >= int(done["createTime"]) + 32
    assert [t["id"] for t in tasks(emu, state="Succeeded")["data"]] == [task_id]
    assert tasks(emu, state="Pending")["total"] == 0


def test_list_filters_and_pages(emu: Emulator) -> None:
    first = prewarm(emu, note="alpha")
    second = prewarm(emu, imageUrl="vllm/vllm-openai:latest", clusterId="5")
    assert tasks(emu)["total"] == 2
    assert [t["id"] for t in tasks(emu, clusterId="5")["data"]] == [second]
    assert [t["id"] for t in tasks(emu, name="ALPHA")["data"]] == [first]  # the note matches
    assert [t["id"] for t in tasks(emu, name="vllm")["data"]] == [second]  # the image name matches
    assert [t["id"] for t in tasks(emu, page=2, pageSize=1)["data"]] == [first]
    bad = emu.api.get("/image/prewarm", params={"state": "Done"})
    assert bad.status_code == 400 and bad.json()["reason"] == "VALIDATOR_PARAM"


def test_quota_edit_delete(emu: Emulator) -> None:
    quota = emu.api.get("/image/prewarm/quota").json()
    assert quota == {"total": 0, "limit": 10, "perImageSize": 50}
    ids = [prewarm(emu) for _ in range(quota["limit"])]
    full = emu.api.post("/image/prewarm", json={"imageUrl": "a:b", "clusterId": "1"})
    assert full.status_code == 400 and full.json()["reason"] == "IMAGE_PREWARM_NUM_LIMIT"

    assert emu.api.post("/image/prewarm/edit", json={"id": ids[0], "note": "kept"}).json() == {}
    assert {t["note"] for t in tasks(emu, name="kept")["data"]} == {"kept"}
    unknown = emu.api.post("/image/prewarm/delete", json={"ids": [ids[0], "nope"]})
    assert unknown.status_code == 400 and unknown.json()["reason"] == "RESOURCE_NOT_FOUND"
    assert tasks(emu)["total"] == 10  # all or nothing
    assert emu.api.post("/image/prewarm/delete", json={"ids": ids[:4]}).json() == {}
    assert emu.api.get("/image/prewarm/quota").json()["total"] == 6


def test_create_is_validated(emu: Emulator) -> None:
    for body in (
        {"clusterId": "1"},
        {"imageUrl": "a:b"},
        {"imageUrl": "a:b", "clusterId": "99"},
        {"imageUrl": "a:b", "clusterId": "1", "productIds": ["h100.16c192g"]},  # not offered in US-CA-06
        {"imageUrl": "a:b", "clusterId": "1", "repositoryAuth": "unknown"},
        {"imageUrl": "a:b", "clusterId": "1", "productIds": "4090.16c62g"},
    ):
        response = emu.api.post("/image/prewarm", json=body)
        assert (response.status_code, response.json()["reason"]) == (400, "VALIDATOR_PARAM"), body
    assert emu.api.post("/image/prewarm/delete", json={"ids": []}).json()["reason"] == "VALIDATOR_PARAM"
