"""/openapi.json tells the truth: every instances route documents the model of its real answer, every
error the one envelope, and no route a 422 (bad input is 400). Real answers, taken through a lifecycle
with a webhook, validate against the documented models with no key missing or extra."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from novita_gpu.autostop.schemas import AutoStopStatsAnswer, TriggerAnswer
from novita_gpu.catalog.schemas import ProductsAnswer, TemplatesAnswer
from novita_gpu.instances.schemas import (
    ActionAnswer,
    CreatedAnswer,
    EventsAnswer,
    InstanceAnswer,
    InstancePageAnswer,
    SyncAnswer,
    TouchAnswer,
)
from novita_gpu.observability.schemas import HealthAnswer, MetricsAnswer
from novita_gpu.web.errors import ErrorAnswer
from tests.harness import Harness


def documented(spec: dict[str, Any], method: str, path: str, status: str) -> str:
    [content] = spec["paths"][path][method]["responses"][status]["content"].values()
    return str(content["schema"]["$ref"]).rsplit("/", 1)[-1]


def check(model: type[BaseModel], answer: dict[str, Any]) -> None:
    model.model_validate(answer)  # the models forbid unknown keys and require every documented one


async def test_each_instances_route_documents_its_answer_and_errors(harness: Harness) -> None:
    spec = (await harness.http.get("/openapi.json")).json()
    base, one = "/api/instances", "/api/instances/{instance_id}"
    assert documented(spec, "post", base, "201") == "CreatedAnswer"
    assert documented(spec, "get", base, "200") == "InstancePageAnswer"
    assert documented(spec, "get", one, "200") == documented(spec, "patch", one, "200") == "InstanceAnswer"
    assert documented(spec, "delete", one, "202") == documented(spec, "delete", one, "200") == "ActionAnswer"
    assert documented(spec, "post", f"{one}/stop", "202") == "ActionAnswer"
    assert documented(spec, "put", f"{one}/last-used", "200") == "TouchAnswer"
    assert documented(spec, "get", f"{one}/events", "200") == "EventsAnswer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            assert documented(spec, method, path, "4XX") == "ErrorAnswer", (method, path)
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert documented(spec, "get", "/health", "200") == documented(spec, "get", "/health", "503") == "HealthAnswer"
    for method, path, model in [
        ("get", "/api/metrics", "MetricsAnswer"),
        ("get", "/api/products", "ProductsAnswer"),
        ("get", "/api/templates", "TemplatesAnswer"),
        ("get", "/api/instances/auto-stop/stats", "AutoStopStatsAnswer"),
        ("post", "/api/instances/auto-stop/trigger", "TriggerAnswer"),
    ]:
        assert documented(spec, method, path, "200") == model, path


async def test_real_answers_match_the_documented_models(harness: Harness, receiver_url: str) -> None:
    created = await harness.create(webhookUrl=receiver_url, labels={"team": "ml"})
    check(CreatedAnswer, created)
    instance_id = created["instanceId"]
    ready = await harness.until_status(instance_id, "ready")
    assert ready["connectionDetails"] and ready["healthCheck"]
    check(InstanceAnswer, ready)
    check(InstancePageAnswer, (await harness.http.get("/api/instances")).json())
    check(TouchAnswer, (await harness.http.put(f"/api/instances/{instance_id}/last-used")).json())
    patched = await harness.http.patch(f"/api/instances/{instance_id}", json={"autoStop": {"signal": "gpu"}})
    check(InstanceAnswer, patched.json())
    stop = await harness.http.post(f"/api/instances/{instance_id}/stop")
    again = await harness.http.post(f"/api/instances/{instance_id}/stop")
    assert (stop.status_code, again.status_code) == (202, 200)
    check(ActionAnswer, stop.json())
    check(ActionAnswer, again.json())
    check(InstanceAnswer, await harness.until_status(instance_id, "stopped"))
    while await harness.services.dispatcher.tick():
        pass
    events = (await harness.http.get(f"/api/instances/{instance_id}/events")).json()
    assert events["events"][0]["webhooks"][0]["history"], "a delivered webhook with its attempt"
    check(EventsAnswer, events)
    check(SyncAnswer, (await harness.http.post("/api/instances/sync")).json())
    check(ErrorAnswer, (await harness.http.post("/api/instances", json={"name": 5})).json())
    check(HealthAnswer, (await harness.http.get("/health")).json())
    check(MetricsAnswer, (await harness.http.get("/api/metrics")).json())
    check(ProductsAnswer, (await harness.http.get("/api/products")).json())
    check(TemplatesAnswer, (await harness.http.get("/api/templates")).json())


async def test_auto_stop_answers_match_the_documented_models(harness: Harness) -> None:
    created = await harness.create(autoStopMinutes=1)
    await harness.until_status(created["instanceId"], "ready")
    harness.clock.advance(120)
    stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
    assert stats["nextDeadline"] is not None
    check(AutoStopStatsAnswer, stats)
    dry = (await harness.http.post("/api/instances/auto-stop/trigger")).json()
    assert dry["wouldStop"]
    check(TriggerAnswer, dry)
    done = (await harness.http.post("/api/instances/auto-stop/trigger", json={"dryRun": False})).json()
    assert done["stopped"]
    check(TriggerAnswer, done)
    check(ErrorAnswer, (await harness.http.get("/api/instances/inst_missing")).json())


def _accepts(spec: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    """Whether the document's `schema` (refs into its components) allows `value`."""
    import jsonschema_rs  # comes with schemathesis (dev dependencies)

    root = {**schema, "components": spec["components"]}
    return bool(jsonschema_rs.validator_for(root).is_valid(value))


def _body_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return schema


def _query_schema(spec: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    [parameter] = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == name]
    schema: dict[str, Any] = parameter["schema"]
    return schema


async def test_the_document_refuses_what_the_server_refuses(harness: Harness) -> None:
    """The six inputs schemathesis found allowed by the document but refused by the server:
    the document now refuses them too, and what it allows of the same fields is taken."""
    spec = (await harness.http.get("/openapi.json")).json()
    create = _body_schema(spec, "post", "/api/instances")
    start_by_name = _body_schema(spec, "post", "/api/instances/start")
    start_by_id = _body_schema(spec, "post", "/api/instances/{instance_id}/start")
    clear = _body_schema(spec, "post", "/api/cache/clear")
    wait_for = _query_schema(spec, "get", "/api/instances/{instance_id}", "waitFor")
    cursor = _query_schema(spec, "get", "/api/instances", "cursor")
    valid = {"name": "doc-check", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}

    refused = [
        (create, {**valid, "templateId": ""}),
        (start_by_name, {}),
        (start_by_id, {"webhookUrl": ""}),
        (clear, {"cacheName": 0}),
        (wait_for, ""),
        (cursor, "not-a-cursor"),
    ]
    for schema, value in refused:
        assert not _accepts(spec, schema, value), value
    one = f"/api/instances/{(await harness.create())['instanceId']}"
    for response in [
        await harness.http.post("/api/instances", json={**valid, "templateId": ""}),
        await harness.http.post("/api/instances/start", json={}),
        await harness.http.post(f"{one}/start", json={"webhookUrl": ""}),
        await harness.http.post("/api/cache/clear", json={"cacheName": 0}),
        await harness.http.get(one, params={"waitFor": ""}),
        await harness.http.get("/api/instances", params={"cursor": "not-a-cursor"}),
    ]:
        assert response.status_code == 400, response.text

    assert _accepts(spec, create, {**valid, "templateId": " 12 "}) and _accepts(
        spec, create, {**valid, "templateId": 12}
    )
    assert _accepts(spec, wait_for, "ready, running") and _accepts(spec, clear, {"cacheName": "products"})
    await harness.create()
    page = (await harness.http.get("/api/instances", params={"limit": 1})).json()
    assert _accepts(spec, cursor, page["nextCursor"])
    assert (await harness.http.get(one, params={"waitFor": "ready, running", "timeout": 0})).status_code == 200
    cache_names = spec["components"]["schemas"]["ClearIn"]["properties"]["cacheName"]["anyOf"][0]["enum"]
    assert cache_names == harness.services.caches.names()  # the document names every cache there is


async def test_options_and_405_name_the_documented_methods_of_the_path(harness: Harness) -> None:
    """Allow lists what the document gives the path, a concrete path before a templated one: OPTIONS
    /api/instances/start once said `Allow: GET` (from /{instance_id}) in a 405."""
    spec = (await harness.http.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        url = path.replace("{instance_id}", "inst_0123456789abcdef0123")
        documented = {method.upper() for method in operations} | {"OPTIONS"}
        options = await harness.http.options(url)
        assert options.status_code == 204, (path, options.text)
        assert set(options.headers["allow"].split(", ")) == documented, path
        method = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in documented)
        refused = await harness.http.request(method, url)
        assert refused.status_code == 405 and refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED", path
        assert set(refused.headers["allow"].split(", ")) == documented, path
    for method in ("GET", "DELETE"):  # the by-name actions own their paths; no instance is called "stop"
        response = await harness.http.request(method, "/api/instances/stop")
        assert response.status_code == 405 and response.headers["allow"] == "OPTIONS, POST", method
    assert (await harness.http.options("/nowhere")).status_code == 404


async def test_a_document_that_cannot_be_built_leaves_405_and_options_answered(harness: Harness) -> None:
    """Allow comes from the document; when a route breaks its generation, Starlette's Allow is used
    instead of turning every 405 into a 500."""

    def broken() -> dict[str, Any]:
        raise RuntimeError("a route the generator cannot describe")

    harness.app.openapi = broken  # type: ignore[method-assign]
    options = await harness.http.options("/api/instances/inst_0123456789abcdef0123/stop")
    assert options.status_code == 204 and "OPTIONS" in options.headers["allow"]
    refused = await harness.http.request("PATCH", "/api/instances")
    assert refused.status_code == 405 and refused.headers["allow"]
