"""Bad input of every kind gets its documented error in the envelope, and nothing is written."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Harness

VALID = {"name": "ok-name", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}


def with_(**changes: Any) -> dict[str, Any]:
    body = {**VALID, **changes}
    return {k: v for k, v in body.items() if v is not ...}


CREATE_CASES = [
    ("missing name", with_(name=...), 400, "VALIDATION_ERROR", "name"),
    ("empty name", with_(name=""), 400, "VALIDATION_ERROR", "name"),
    ("name with spaces", with_(name="my instance"), 400, "VALIDATION_ERROR", "name"),
    ("name too long", with_(name="a" * 64), 400, "VALIDATION_ERROR", "name"),
    ("name as number", with_(name=42), 400, "VALIDATION_ERROR", "name"),
    ("missing productName", with_(productName=...), 400, "VALIDATION_ERROR", "productName"),
    ("missing templateId", with_(templateId=...), 400, "VALIDATION_ERROR", "templateId"),
    ("templateId as bool", with_(templateId=True), 400, "VALIDATION_ERROR", "templateId"),
    ("templateId as object", with_(templateId={"id": 1}), 400, "VALIDATION_ERROR", "templateId"),
    ("gpuNum as string", with_(gpuNum="2"), 400, "VALIDATION_ERROR", "gpuNum"),
    ("gpuNum zero", with_(gpuNum=0), 400, "VALIDATION_ERROR", "gpuNum"),
    ("gpuNum nine", with_(gpuNum=9), 400, "VALIDATION_ERROR", "gpuNum"),
    ("rootfsSize too small", with_(rootfsSize=5), 400, "VALIDATION_ERROR", "rootfsSize"),
    ("billingMode unknown", with_(billingMode="monthly"), 400, "VALIDATION_ERROR", "billingMode"),
    ("negative price", with_(maxPricePerHour=-1), 400, "VALIDATION_ERROR", "maxPricePerHour"),
    ("autoStopMinutes negative", with_(autoStopMinutes=-5), 400, "VALIDATION_ERROR", "autoStopMinutes"),
    ("envs not a list", with_(envs={"A": "b"}), 400, "VALIDATION_ERROR", "envs"),
    ("env key invalid", with_(envs=[{"key": "1 bad", "value": "x"}]), 400, "VALIDATION_ERROR", "envs.0.key"),
    ("labels not strings", with_(labels={"a": 1}), 400, "VALIDATION_ERROR", "labels.a"),
    ("unknown field", with_(gpuCount=2), 400, "VALIDATION_ERROR", "gpuCount"),
    ("unknown product", with_(productName="RTX 9999"), 400, "UNKNOWN_PRODUCT", "productName"),
    ("unknown template", with_(templateId="no-such-template"), 400, "UNKNOWN_TEMPLATE", "templateId"),
    ("unknown region", with_(region="MARS-01"), 400, "UNKNOWN_REGION", "region"),
    ("price below every offer", with_(maxPricePerHour=0.01), 400, "NO_OFFER_WITHIN_PRICE", "productName"),
    (
        "webhook to loopback literal",
        with_(webhookUrl="http://0x7f.0.0.1/hook"),
        400,
        "INVALID_WEBHOOK_URL",
        "webhookUrl",
    ),
    (
        "webhook to metadata",
        with_(webhookUrl="http://169.254.169.254/latest"),
        400,
        "INVALID_WEBHOOK_URL",
        "webhookUrl",
    ),
    ("webhook not http", with_(webhookUrl="file:///etc/passwd"), 400, "INVALID_WEBHOOK_URL", "webhookUrl"),
]


@pytest.fixture
async def strict_harness(tmp_path: Path) -> Any:
    """Loopback webhooks refused, as on a real deployment."""
    h = await Harness(tmp_path, webhook_allow_loopback=False).start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.mark.parametrize(("case", "body", "status", "code", "field"), CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
async def test_create_rejects_bad_input(
    strict_harness: Harness, case: str, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    response = await strict_harness.http.post("/api/instances", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["requestId"]
    assert field in [d["field"] for d in error.get("details", [])], error
    assert (await strict_harness.http.get("/api/instances")).json()["total"] == 0
    assert strict_harness.upstream_instances() == []


async def test_malformed_json_is_400(harness: Harness) -> None:
    response = await harness.http.post(
        "/api/instances", content=b'{"name": "x",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_JSON"


async def test_json_that_is_not_an_object_is_400(harness: Harness) -> None:
    response = await harness.http.post("/api/instances", json=["a", "b"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_oversized_body_is_413(harness: Harness) -> None:
    body = {**VALID, "labels": {"pad": "x" * 200}, "envs": [{"key": f"K{i}", "value": "v" * 4000} for i in range(40)]}
    response = await harness.http.post("/api/instances", json=body)
    assert response.status_code == 413 and response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert (await harness.http.get("/api/instances")).json()["total"] == 0


async def test_unknown_route_and_method_use_the_envelope(harness: Harness) -> None:
    missing = await harness.http.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = await harness.http.patch("/api/instances")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_unknown_instance_is_404_for_every_action(harness: Harness) -> None:
    for method, path in [
        ("GET", "/api/instances/inst_nope"),
        ("POST", "/api/instances/inst_nope/start"),
        ("POST", "/api/instances/inst_nope/stop"),
        ("DELETE", "/api/instances/inst_nope"),
        ("PUT", "/api/instances/inst_nope/last-used"),
        ("GET", "/api/instances/inst_nope/events"),
    ]:
        response = await harness.http.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "INSTANCE_NOT_FOUND"
    by_name = await harness.http.post("/api/instances/stop", json={"instanceName": "ghost"})
    assert by_name.status_code == 404


async def test_bad_query_parameters_are_400(harness: Harness) -> None:
    for params in ({"limit": 0}, {"limit": "many"}, {"status": "sleeping"}, {"cursor": "garbage!"}):
        response = await harness.http.get("/api/instances", params=params)
        assert response.status_code == 400, params
    wait = await harness.http.get("/api/instances/x", params={"waitFor": "soon"})
    assert wait.status_code == 400


async def test_by_name_actions_need_a_name(harness: Harness) -> None:
    for path in ("/api/instances/start", "/api/instances/stop", "/api/instances/delete"):
        response = await harness.http.post(path, json={})
        assert response.status_code == 400, path
        assert response.json()["error"]["details"][0]["field"] == "instanceName"


async def test_starting_a_stopping_instance_is_a_409(harness: Harness) -> None:
    created = await harness.create()
    await harness.until_status(created["instanceId"], "ready")
    await harness.http.post(f"/api/instances/{created['instanceId']}/stop")
    response = await harness.http.post(f"/api/instances/{created['instanceId']}/start")
    assert response.status_code == 409 and response.json()["error"]["code"] == "INVALID_STATE"


async def test_request_ids_are_echoed_on_errors(harness: Harness) -> None:
    response = await harness.http.get(
        "/api/instances/none", headers={"X-Request-ID": "req-123", "X-Correlation-ID": "corr-9"}
    )
    assert response.headers["X-Request-ID"] == "req-123"
    assert response.headers["X-Correlation-ID"] == "corr-9"
    assert response.json()["error"]["requestId"] == "req-123"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CRAFTED_CURSORS = [
    _b64("2020-01-01T00:00:00|inst_x"),  # a naive time
    _b64("9999-12-31T23:59:59-23:59|z"),  # overflows when moved to UTC
    _b64("0001-01-01T00:00:00+14:00|z"),  # underflows when moved to UTC
    _b64("2020-01-01T00:00:00+00:00|inst_x"),  # the old format
    "garbage!",
    "",
    "1.",
    ".inst_x",
    "123456789012345678.inst_x",  # beyond 17 digits
    "-1.inst_x",
    "1.inst x",
    "1.inst_x\n",
    "1." + "a" * 65,
    "\uff11.inst_x",  # a full-width digit: str.isdigit() would take it
]


@pytest.mark.parametrize("cursor", CRAFTED_CURSORS)
async def test_a_cursor_we_did_not_issue_is_400_invalid_cursor(harness: Harness, cursor: str) -> None:
    response = await harness.http.get("/api/instances", params={"cursor": cursor, "limit": 1})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_CURSOR"


async def test_issued_cursors_walk_every_page_once(harness: Harness) -> None:
    created = [(await harness.create())["instanceId"] for _ in range(3)]
    harness.clock.advance(1)
    created.append((await harness.create())["instanceId"])
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await harness.http.get("/api/instances", params=params)).json()
        seen += [i["instanceId"] for i in page["instances"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(created) and len(seen) == 4
    assert seen[0] == created[-1]  # newest first
