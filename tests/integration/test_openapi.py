"""/openapi.json tells the truth: every instances route documents the model of its real answer, every
error the one envelope, and no route a 422 (bad input is 400). Real answers, taken through a lifecycle
with a webhook, validate against the documented models with no key missing or extra."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from novita_gpu.autostop.answers import AutoStopStatsAnswer, TriggerAnswer
from novita_gpu.catalog.answers import ProductsAnswer, TemplatesAnswer
from novita_gpu.instances.answers import (
    ActionAnswer,
    CreatedAnswer,
    EventsAnswer,
    InstanceAnswer,
    InstancePageAnswer,
    SyncAnswer,
    TouchAnswer,
)
from novita_gpu.observability.answers import HealthAnswer, MetricsAnswer
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
    assert documented(spec, "get", one, "200") == "InstanceAnswer"
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
