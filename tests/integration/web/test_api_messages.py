"""What the API says to a person who got a request slightly wrong, over HTTP: an unknown query parameter
is refused by name on every route, `?label=KEY=VALUE` filters the list on both stores, a JSON body sent
without its content type is told so, and an unknown template lists the ones there are."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest

from novita_gpu.catalog.service import TEMPLATES_NAMED, unknown_template_message
from novita_gpu.novita import Template
from tests.harness import SEED_BODY, Harness


async def test_a_misspelt_filter_is_400_naming_it_not_a_list_of_everything(harness: Harness) -> None:
    await harness.create(name="one")
    response = await harness.http.get("/api/instances", params={"stauts": "ready"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == (
        "Unknown query parameter(s) 'stauts' for this route; it takes cursor, label, limit, name, status."
    )
    assert error["details"] == [{"field": "stauts", "message": "unknown query parameter; did you mean 'status'?"}]

    two = await harness.http.get("/api/instances", params={"Status": "ready", "zzz": "1", "limit": 5})
    assert two.status_code == 400 and [d["field"] for d in two.json()["error"]["details"]] == ["Status", "zzz"]
    assert (await harness.http.get("/api/instances", params={"status": "creating", "limit": 5})).json()["total"] == 1


async def test_every_documented_route_refuses_a_query_parameter_it_does_not_declare(harness: Harness) -> None:
    spec = (await harness.http.get("/openapi.json")).json()
    checked = 0
    for template, item in spec["paths"].items():
        path = re.sub(r"\{[^}]+\}", "inst_nope", template)
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert "not_a_parameter" not in declared
            response = await harness.http.request(method.upper(), path, params={"not_a_parameter": "1"})
            assert response.status_code == 400, (method, template, response.text)
            error = response.json()["error"]
            assert error["details"][0]["field"] == "not_a_parameter", (method, template)
            assert all(name in error["message"] for name in declared), (method, template, error["message"])
            checked += 1
    assert checked >= 20
    # A body field sent as a query parameter is not taken either (it used to be ignored silently).
    sync = await harness.http.post("/api/instances/auto-stop/trigger", params={"dryRun": "false"}, json={})
    assert sync.status_code == 400 and "'dryRun'" in sync.json()["error"]["message"]


async def test_label_filters_the_list_all_of_them_on_both_stores(store_harness: Harness) -> None:
    h = store_harness
    odd_key = 'we"ird.key'  # a JSON path could not quote it; the filter must still find it
    a = (await h.create(name="a", labels={"team": "ml", "env": "prod", odd_key: "x=y"}))["instanceId"]
    b = (await h.create(name="b", labels={"team": "ml", "env": "dev"}))["instanceId"]
    c = (await h.create(name="c", labels={"team": "web"}))["instanceId"]
    await h.create(name="d")

    async def listed(*labels: str, **params: Any) -> tuple[list[str], int]:
        query = [("label", label) for label in labels] + list(params.items())
        response = await h.http.get("/api/instances", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        return sorted(i["instanceId"] for i in page["instances"]), page["total"]

    assert await listed("team=ml") == (sorted([a, b]), 2)
    assert await listed("team=ml", "env=prod") == ([a], 1)
    assert await listed("team=web") == ([c], 1)
    assert await listed(f"{odd_key}=x=y") == ([a], 1)  # the value is everything after the first "="
    assert await listed("team=ml", "team=web") == ([], 0)
    assert await listed("team=") == ([], 0)
    assert await listed("team=ml", status="creating") == (sorted([a, b]), 2)
    first = (await h.http.get("/api/instances", params={"label": "team=ml", "limit": 1})).json()
    rest = (
        await h.http.get("/api/instances", params={"label": "team=ml", "limit": 1, "cursor": first["nextCursor"]})
    ).json()
    assert sorted(i["instanceId"] for i in first["instances"] + rest["instances"]) == sorted([a, b])
    assert rest["nextCursor"] is None


async def test_a_label_filter_that_is_not_key_value_is_400_as_the_document_says(harness: Harness) -> None:
    spec = (await harness.http.get("/openapi.json")).json()
    [parameter] = [p for p in spec["paths"]["/api/instances"]["get"]["parameters"] if p["name"] == "label"]
    validator = jsonschema_rs.validator_for(parameter["schema"])
    for bad in ["team", "=ml", "k" * 64 + "=v", "team=" + "v" * 256]:
        assert not validator.is_valid([bad]), bad
        response = await harness.http.get("/api/instances", params={"label": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["details"] == [{"field": "label", "message": "not KEY=VALUE"}]
    for good in ["team=ml", "team=", "k=a=b"]:
        assert validator.is_valid([good])
        assert (await harness.http.get("/api/instances", params={"label": good})).status_code == 200
    too_many = [("label", f"k{i}=v") for i in range(21)]
    assert not validator.is_valid([v for _, v in too_many])
    assert (await harness.http.get("/api/instances", params=too_many)).status_code == 400


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_json_body_without_its_content_type_is_told_so(harness: Harness, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"name": "x", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}'
    response = await harness.http.post("/api/instances", content=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "Content-Type"
    assert "Content-Type: application/json" in error["message"]
    assert (repr(content_type) if content_type else "has none") in error["message"]
    assert (await harness.http.get("/api/instances")).json()["total"] == 0
    # Bodies that may be left out still may be: no body and no content type is fine.
    assert (await harness.http.post("/api/instances/sync")).status_code == 200


async def test_an_unknown_template_lists_the_known_ones_and_the_closest(harness: Harness) -> None:
    response = await harness.http.post("/api/instances", json={**SEED_BODY, "templateId": "pytorch-jupter"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "UNKNOWN_TEMPLATE" and error["details"][0]["field"] == "templateId"
    assert error["message"].startswith(
        "No template with id or name 'pytorch-jupter'. Did you mean 'pytorch-jupyter'? Known templates: "
    )
    known = {t["name"] for t in (await harness.http.get("/api/templates")).json()["templates"]}
    listed = error["message"].split("Known templates: ")[1].rstrip(".").split(", ")
    assert set(listed) == known


def test_a_long_template_list_is_cut_with_the_caller_s_and_official_ones_first() -> None:
    templates = [Template(id=str(i), name=f"community-{i:03}", channel="community") for i in range(200)]
    templates += [Template(id="p", name="mine", channel="private"), Template(id="o", name="torch", channel="official")]
    message = unknown_template_message("nothing-like-it", templates)
    listed = message.split("Known templates: ")[1]
    assert listed.startswith("mine, torch, community-000, ")
    assert listed.endswith(f" and {202 - TEMPLATES_NAMED} more (GET /api/templates).")
    assert "Did you mean" not in message
    assert unknown_template_message("x", []) == "No template with id or name 'x'. The account has no templates."
