"""Every string we store is one we can serve back, on SQLite and on PostgreSQL.

A lone surrogate (`"\\udc00"`: valid JSON, not Unicode text) once answered 500 after the row was
stored and the instance created, and then broke every list of that key and its webhooks. Such text,
NUL characters, non-finite numbers and repeated keys are refused with 400 before anything is written;
and a row that already holds such text (written before this check) is served with U+FFFD in its place
instead of failing the page, the instance or its webhooks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from novita_gpu.kit.serving import BackgroundServer
from novita_gpu.kit.tables import Instance
from tests.harness import Harness

VALID = '"name": "ok-name", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"'
SURROGATE = "\\udc00"  # as written in the JSON text
NUL = "\\u0000"

# (what, JSON text of the create body, field named in the error)
UNSTORABLE_CREATES = [
    ("surrogate in a label value", f'{{{VALID}, "labels": {{"k": "{SURROGATE}"}}}}', "labels.k"),
    ("surrogate in a label key", f'{{{VALID}, "labels": {{"k{SURROGATE}": "v"}}}}', "labels.k\\udc00"),
    ("surrogate in an env value", f'{{{VALID}, "envs": [{{"key": "A", "value": "{SURROGATE}"}}]}}', "envs.0.value"),
    ("surrogate in an env key", f'{{{VALID}, "envs": [{{"key": "A{SURROGATE}", "value": "v"}}]}}', "envs.0.key"),
    ("surrogate in the name", f'{{{VALID}, "name": "a{SURROGATE}"}}', "name"),
    ("surrogate in the product", f'{{{VALID}, "productName": "RTX{SURROGATE}"}}', "productName"),
    ("surrogate in the template", f'{{{VALID}, "templateId": "t{SURROGATE}"}}', "templateId"),
    ("surrogate in the region", f'{{{VALID}, "region": "r{SURROGATE}"}}', "region"),
    ("surrogate in the webhook", f'{{{VALID}, "webhookUrl": "http://example.com/{SURROGATE}"}}', "webhookUrl"),
    ("surrogate in the probe path", f'{{{VALID}, "healthCheck": {{"path": "/{SURROGATE}"}}}}', "healthCheck.path"),
    ("high surrogate alone", f'{{{VALID}, "labels": {{"k": "\\ud83d"}}}}', "labels.k"),
    ("NUL in a label value", f'{{{VALID}, "labels": {{"k": "a{NUL}b"}}}}', "labels.k"),
    ("NUL in a label key", f'{{{VALID}, "labels": {{"k{NUL}": "v"}}}}', "labels.k\\u0000"),
    ("NUL in an env value", f'{{{VALID}, "envs": [{{"key": "A", "value": "a{NUL}"}}]}}', "envs.0.value"),
    ("NUL in the probe path", f'{{{VALID}, "healthCheck": {{"path": "/a{NUL}"}}}}', "healthCheck.path"),
    ("NUL in the region", f'{{{VALID}, "region": "{NUL}"}}', "region"),
]


async def post_json(h: Harness, path: str, text: str) -> Any:
    return await h.http.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def assert_refused(response: Any, code: str, field: str | None = None) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["requestId"], error
    if field is not None:
        assert [d["field"] for d in error["details"]] == [field], error


async def test_unstorable_text_is_refused_before_anything_is_written(store_harness: Harness) -> None:
    h = store_harness
    for what, body, field in UNSTORABLE_CREATES:
        response = await post_json(h, "/api/instances", body)
        assert response.status_code == 400, (what, response.text)
        assert_refused(response, "VALIDATION_ERROR", field)
    assert (await h.http.get("/api/instances")).json()["total"] == 0
    assert h.upstream_instances() == []


async def test_actions_refuse_unstorable_text_and_change_nothing(store_harness: Harness) -> None:
    h = store_harness
    created = await h.create()
    await h.until_status(created["instanceId"], "ready")
    await h.http.post(f"/api/instances/{created['instanceId']}/stop")
    stopped = await h.until_status(created["instanceId"], "stopped")
    one = f"/api/instances/{created['instanceId']}"
    for path, body, field in [
        (f"{one}/start", f'{{"healthCheck": {{"path": "/{NUL}"}}}}', "healthCheck.path"),
        (f"{one}/start", f'{{"webhookUrl": "http://example.com/{SURROGATE}"}}', "webhookUrl"),
        ("/api/instances/start", f'{{"instanceName": "{created["name"]}{SURROGATE}"}}', "instanceName"),
        ("/api/instances/stop", f'{{"instanceName": "{NUL}"}}', "instanceName"),
    ]:
        assert_refused(await post_json(h, path, body), "VALIDATION_ERROR", field)
    assert await h.instance(created["instanceId"]) == stopped


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (f'{{{VALID}, "name": "other-name"}}', "VALIDATION_ERROR", "name"),
        (f'{{{VALID}, "labels": {{"k": "1", "k": "2"}}}}', "VALIDATION_ERROR", "labels.k"),
        (f'{{{VALID}, "envs": [{{"key": "A", "value": "1", "value": "2"}}]}}', "VALIDATION_ERROR", "envs.0.value"),
        (f'{{{VALID}, "maxPricePerHour": 1e999}}', "VALIDATION_ERROR", "maxPricePerHour"),
        (f'{{{VALID}, "maxPricePerHour": -1e999}}', "VALIDATION_ERROR", "maxPricePerHour"),
        (f'{{{VALID}, "maxPricePerHour": NaN}}', "INVALID_JSON", "body"),
        (f'{{{VALID}, "maxPricePerHour": Infinity}}', "INVALID_JSON", "body"),
        (f'{{{VALID}, "gpuNum": {"9" * 5000}}}', "INVALID_JSON", "body"),
        ("[" * 10_000 + "]" * 10_000, "INVALID_JSON", "body"),
        (b'{"name": "\xff"}', "INVALID_JSON", "body"),
    ],
    ids=[
        "repeated name",
        "repeated label",
        "repeated env field",
        "1e999",
        "-1e999",
        "NaN",
        "Infinity",
        "5000-digit integer",
        "nested too deeply",
        "not UTF-8",
    ],
)
async def test_bodies_the_api_cannot_take_as_meant_are_400(
    harness: Harness, body: str | bytes, code: str, field: str
) -> None:
    raw = body if isinstance(body, bytes) else body.encode()
    response = await harness.http.post("/api/instances", content=raw, headers={"Content-Type": "application/json"})
    assert_refused(response, code, field)
    assert (await harness.http.get("/api/instances")).json()["total"] == 0


async def test_a_price_beyond_the_documented_maximum_is_400(harness: Harness) -> None:
    response = await post_json(harness, "/api/instances", f'{{{VALID}, "maxPricePerHour": 1e300}}')
    assert_refused(response, "VALIDATION_ERROR")
    assert response.json()["error"]["details"][0]["field"] == "maxPricePerHour"


async def test_a_bad_row_already_stored_never_breaks_a_page_an_instance_or_a_webhook(
    store_harness: Harness,
) -> None:
    h = store_harness
    payloads: list[dict[str, Any]] = []

    async def receive(request: Request) -> Response:
        payloads.append(json.loads(await request.body()))
        return Response("OK")

    receiver = BackgroundServer(Starlette(routes=[Route("/hook", receive, methods=["POST"])]))
    await receiver.start()
    try:
        good = await h.create()
        bad = await h.create(webhookUrl=f"{receiver.url}/hook")
        # Written behind the API's back, as rows stored before the check were (JSON columns keep the escape).
        async with h.services.db.write() as session:
            await session.execute(
                update(Instance)
                .where(Instance.id == bad["instanceId"])
                .values(labels={"k\udc00": "v\udc00", "ok": "fine"}, health_check={"note": "\ud83d"})
            )
        h.services.instances.changes.pulse(None)  # as after a restart: nothing cached

        page = await h.http.get("/api/instances")
        assert page.status_code == 200, page.text
        assert {i["instanceId"] for i in page.json()["instances"]} == {good["instanceId"], bad["instanceId"]}
        shown = await h.instance(bad["instanceId"])
        assert shown["labels"] == {"k\ufffd": "v\ufffd", "ok": "fine"}
        assert shown["healthCheck"] == {"note": "\ufffd"}
        assert (await h.http.get(f"/api/instances/{bad['instanceId']}/events")).status_code == 200

        stop = await h.http.post(f"/api/instances/{bad['instanceId']}/stop")
        assert stop.status_code in (200, 202), stop.text
        while await h.services.dispatcher.tick():
            pass
        assert payloads, "the webhook of the bad row was delivered"
        assert payloads[-1]["instanceId"] == bad["instanceId"]
        assert payloads[-1]["data"]["labels"] == {"k\ufffd": "v\ufffd", "ok": "fine"}
        events = (await h.http.get(f"/api/instances/{bad['instanceId']}/events")).json()["events"]
        assert all(w["status"] == "delivered" for e in events for w in e["webhooks"]), events
    finally:
        await receiver.stop()


async def test_ids_and_filters_that_cannot_be_stored_are_4xx_never_500(store_harness: Harness) -> None:
    """A NUL (or a lone surrogate, which reaches us as U+FFFD) in a path or query is no id or name we
    hold: PostgreSQL refused the comparison itself with a 500."""
    h = store_harness
    for method, url in [
        ("GET", "/api/instances/a%00b"),
        ("GET", "/api/instances/a%00b/events"),
        ("POST", "/api/instances/a%00b/stop"),
        ("POST", "/api/instances/a%00b/start"),
        ("DELETE", "/api/instances/a%00b"),
        ("PUT", "/api/instances/a%00b/last-used"),
        ("GET", "/api/instances/%ED%B0%80"),
        ("GET", "/api/instances?name=a%00b"),
        ("GET", "/api/instances?status=ready%00"),
    ]:
        response = await h.http.request(method, url)
        assert 400 <= response.status_code < 500, (method, url, response.text)
        assert response.json()["error"]["requestId"]
    refused = await h.http.post("/api/instances", json={}, headers={"Idempotency-Key": "a\x00b"})
    assert 400 <= refused.status_code < 500, refused.text
