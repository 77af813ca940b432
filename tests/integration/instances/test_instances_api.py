"""The instances API as a user drives it: actions by id and by name, listing, idempotency, long-poll."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.harness import Harness


async def ready_instance(harness: Harness, **body: object) -> dict[str, object]:
    created = await harness.create(**body)
    return await harness.until_status(created["instanceId"], "ready")


async def test_stop_and_start_by_name_and_id(harness: Harness) -> None:
    inst = await ready_instance(harness, name="worker-1")
    response = await harness.http.post("/api/instances/stop", json={"instanceName": "worker-1"})
    assert response.status_code == 202
    assert response.json()["status"] == "stopping" and response.json()["operationId"]
    stopped = await harness.until_status(str(inst["instanceId"]), "stopped")
    assert stopped["statusReason"] == "USER" and stopped["upstreamStatus"] == "exited"
    again = await harness.http.post(f"/api/instances/{inst['instanceId']}/stop")
    assert again.status_code == 200 and again.json()["status"] == "stopped"

    response = await harness.http.post(f"/api/instances/{inst['instanceId']}/start")
    assert response.status_code == 202 and response.json()["status"] == "starting"
    ready = await harness.until_status(str(inst["instanceId"]), "ready")
    assert ready["readyAt"] and ready["healthCheck"]["status"] == "healthy"
    already = await harness.http.post("/api/instances/start", json={"instanceName": "worker-1"})
    assert already.status_code == 200 and already.json()["status"] == "ready"
    assert len(harness.live_upstream()) == 1


async def test_delete_by_name_keeps_the_record_and_frees_the_name(harness: Harness) -> None:
    inst = await ready_instance(harness, name="temp")
    response = await harness.http.post("/api/instances/delete", json={"instanceName": "temp"})
    assert response.status_code == 202
    gone = await harness.until_status(str(inst["instanceId"]), "terminated")
    assert gone["terminatedAt"]
    assert harness.live_upstream() == []
    recreated = await harness.create(name="temp")
    assert recreated["instanceId"] != inst["instanceId"]


async def test_names_are_unique_among_live_instances(harness: Harness) -> None:
    await harness.create(name="dup")
    response = await harness.http.post(
        "/api/instances", json={"name": "dup", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NAME_TAKEN"


async def test_concurrent_creates_with_one_name_make_one_instance(harness: Harness) -> None:
    body = {"name": "race", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
    responses = await asyncio.gather(*(harness.http.post("/api/instances", json=body) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    await harness.tick(3)
    assert len(harness.upstream_instances()) == 1


async def test_idempotency_key_replays_and_conflicts(harness: Harness) -> None:
    body = {"name": "idem", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
    first = await harness.http.post("/api/instances", json=body, headers={"Idempotency-Key": "k-1"})
    second = await harness.http.post("/api/instances", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201
    assert first.json()["instanceId"] == second.json()["instanceId"]
    other = await harness.http.post("/api/instances", json={**body, "gpuNum": 2}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    listing = (await harness.http.get("/api/instances")).json()
    assert listing["total"] == 1


async def test_list_filters_and_cursor(harness: Harness) -> None:
    ids = [(await harness.create(name=f"w-{i}"))["instanceId"] for i in range(5)]
    page1 = (await harness.http.get("/api/instances", params={"limit": 2})).json()
    assert page1["total"] == 5 and len(page1["instances"]) == 2 and page1["nextCursor"]
    page2 = (await harness.http.get("/api/instances", params={"limit": 2, "cursor": page1["nextCursor"]})).json()
    page3 = (await harness.http.get("/api/instances", params={"limit": 2, "cursor": page2["nextCursor"]})).json()
    seen = [i["instanceId"] for p in (page1, page2, page3) for i in p["instances"]]
    assert sorted(seen) == sorted(ids) and page3["nextCursor"] is None
    by_name = (await harness.http.get("/api/instances", params={"name": "w-3"})).json()
    assert [i["name"] for i in by_name["instances"]] == ["w-3"]
    creating = (await harness.http.get("/api/instances", params={"status": "creating,ready"})).json()
    assert creating["total"] == 5
    none_ready = (await harness.http.get("/api/instances", params={"status": "ready"})).json()
    assert none_ready["total"] == 0


async def test_a_listed_page_follows_every_change_to_its_instances(harness: Harness) -> None:
    first, second = await harness.create(name="page-a"), await harness.create(name="page-b")
    listed = (await harness.http.get("/api/instances")).json()["instances"]
    assert {i["name"]: i["status"] for i in listed} == {"page-a": "creating", "page-b": "creating"}
    await harness.http.get(f"/api/instances/{first['instanceId']}")  # both views cached now

    await harness.until_status(first["instanceId"], "ready")
    listed = (await harness.http.get("/api/instances")).json()["instances"]
    assert {i["name"]: i["status"] for i in listed} == {"page-a": "ready", "page-b": "ready"}
    stopped = await harness.http.post(f"/api/instances/{second['instanceId']}/stop")
    assert stopped.status_code == 202
    listed = (await harness.http.get("/api/instances")).json()["instances"]
    assert {i["name"]: i["status"] for i in listed} == {"page-a": "ready", "page-b": "stopping"}


async def test_list_makes_no_upstream_call_per_instance(harness: Harness) -> None:
    for i in range(3):
        await harness.create(name=f"n-{i}")
    harness.emulator.delete("/_emulator/stats")
    for _ in range(5):
        assert (await harness.http.get("/api/instances")).status_code == 200
    assert sum(harness.stats().values()) == 0


async def test_wait_for_ready_long_poll(harness: Harness) -> None:
    created = await harness.create()
    waiter = asyncio.create_task(
        harness.http.get(f"/api/instances/{created['instanceId']}", params={"waitFor": "ready", "timeout": 30})
    )
    await harness.until_status(created["instanceId"], "ready")
    response = await asyncio.wait_for(waiter, 10)
    assert response.status_code == 200 and response.json()["status"] == "ready"


async def test_env_values_never_leave_the_store(harness: Harness) -> None:
    created = await harness.create(envs=[{"key": "HF_TOKEN", "value": "hf_supersecret_value"}])
    await harness.until_status(created["instanceId"], "ready")
    for path in (
        f"/api/instances/{created['instanceId']}",
        "/api/instances",
        f"/api/instances/{created['instanceId']}/events",
    ):
        text = (await harness.http.get(path)).text
        assert "hf_supersecret_value" not in text
    assert "HF_TOKEN" in (await harness.http.get(f"/api/instances/{created['instanceId']}")).text
    upstream = harness.emulator.get(
        "/gpu-instance/openapi/v1/gpu/instance",
        params={"instanceId": (await harness.instance(created["instanceId"]))["novitaInstanceId"]},
        headers={"Authorization": "Bearer x"},
    ).json()
    assert {"key": "HF_TOKEN", "value": "hf_supersecret_value"} in upstream["envs"]


async def test_last_used_defers_auto_stop(harness: Harness) -> None:
    inst = await ready_instance(harness, autoStopMinutes=30)
    harness.clock.advance(600)
    response = await harness.http.put(f"/api/instances/{inst['instanceId']}/last-used")
    assert response.status_code == 200
    body = response.json()
    assert body["autoStop"]["idleMinutes"] == 30
    assert body["lastUsedAt"] == harness.clock.now().isoformat().replace("+00:00", "Z")
    assert body["autoStop"]["stopsAt"] > body["lastUsedAt"]


async def test_sync_endpoint_reconciles_now(harness: Harness) -> None:
    created = await harness.create()
    response = await harness.http.post("/api/instances/sync")
    assert response.status_code == 200 and response.json()["claimed"] >= 1
    assert (await harness.instance(created["instanceId"]))["novitaInstanceId"]


async def test_products_and_templates_are_browsable_and_cached(harness: Harness) -> None:
    products = (await harness.http.get("/api/products", params={"productName": "4090"})).json()["products"]
    rtx = next(p for p in products if p["productName"] == "RTX 4090 24GB")
    prices = [o["pricePerHour"] for o in rtx["offers"]]
    assert prices == sorted(prices) and len(rtx["offers"]) >= 2
    templates = (await harness.http.get("/api/templates")).json()["templates"]
    assert any(t["name"] == "pytorch-jupyter" for t in templates)
    harness.emulator.delete("/_emulator/stats")
    await harness.http.get("/api/products")
    await harness.http.get("/api/templates")
    await harness.create()
    assert sum(harness.stats().values()) == 0  # served from the cache: create did not re-query Novita
    stats = (await harness.http.get("/api/cache/stats")).json()
    assert stats["caches"]["products"]["hits"] >= 1


async def test_repeated_reads_answer_alike_and_follow_changes(harness: Harness) -> None:
    """The second read of an instance is answered from the read cache, before the framework: it must
    look exactly like the first (body, headers, metrics under the route's template) and a change must
    show in the very next read."""
    inst = await ready_instance(harness, name="polled")
    path = f"/api/instances/{inst['instanceId']}"
    counted_before = await _reads_counted(harness)
    first, second = await harness.http.get(path), await harness.http.get(path, headers={"X-Request-Id": "poll-2"})
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and second.json()["status"] == "ready"
    assert second.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert second.headers["x-request-id"] == "poll-2" and first.headers["x-request-id"] != "poll-2"
    # A query string takes the framework's route; its answer is the same.
    assert (await harness.http.get(path, params={"waitFor": "ready", "timeout": 0})).content == first.content

    assert await _reads_counted(harness) == counted_before + 3

    assert (await harness.http.post(f"{path}/stop")).status_code == 202
    assert (await harness.http.get(path)).json()["status"] == "stopping"


async def test_repeated_list_pages_answer_alike_and_follow_changes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain list page (no query, or only `limit`) polled again is answered from the read cache, before
    the framework: the same bytes and headers, counted under the route, and the next change shows."""
    first_made = await ready_instance(harness, name="listed-1")
    await ready_instance(harness, name="listed-2")
    counted_before = await _reads_counted(harness, "/api/instances")
    firsts = {query: await harness.http.get(f"/api/instances{query}") for query in ("", "?limit=1", "?limit=500")}
    route_page = harness.services.instances.list_page

    async def not_the_route(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cached plain page went to the route")

    monkeypatch.setattr(harness.services.instances, "list_page", not_the_route)
    for query, first in firsts.items():
        again = await harness.http.get(f"/api/instances{query}")
        assert first.status_code == again.status_code == 200 and first.content == again.content, query
        assert again.headers["content-type"] == first.headers["content-type"] == "application/json"
    monkeypatch.setattr(harness.services.instances, "list_page", route_page)
    assert len((await harness.http.get("/api/instances?limit=1")).json()["instances"]) == 1
    # Other queries take the route: validated as ever.
    assert (await harness.http.get("/api/instances?limit=501")).status_code == 400
    assert (await harness.http.get("/api/instances?limit=0")).status_code == 400
    assert (await harness.http.get("/api/instances?status=ready&limit=1")).json()["total"] == 2
    assert await _reads_counted(harness, "/api/instances") == counted_before + 10

    assert (await harness.http.post(f"/api/instances/{first_made['instanceId']}/stop")).status_code == 202
    statuses = {i["name"]: i["status"] for i in (await harness.http.get("/api/instances")).json()["instances"]}
    assert statuses == {"listed-1": "stopping", "listed-2": "ready"}


async def _reads_counted(harness: Harness, route: str = "/api/instances/{instance_id}") -> int:
    by_route = (await harness.http.get("/api/metrics")).json()["requests"]["byRoute"]
    return int(by_route.get(route, {}).get("count", 0))
