"""`Client` and `AsyncClient` against a stand-in service: one scenario per test, run through each client,
with the same requests sent and the same answers given (they share one core: novita_gpu_client/core.py).

The blocking client runs inside the test's event loop on purpose: it must never touch the caller's loop
(a notebook's), only block.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from conftest import FAST, FakeService, Request, Scenario, answer, items
from novita_gpu_client import (
    ApiError,
    AsyncClient,
    Client,
    InstanceStopped,
    ServiceConnectionError,
    Status,
)


def view(instance_id: str, status: str, **more: Any) -> dict[str, Any]:
    return {"instanceId": instance_id, "name": "job-1", "status": status, **more}


def test_a_create_is_retried_with_the_same_idempotency_key(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    answers = iter(
        [
            (
                503,
                {"error": {"code": "UPSTREAM_UNAVAILABLE", "message": "Novita is unreachable."}},
                {"Retry-After": "0"},
            ),
            (201, view("inst_1", "creating")),
        ]
    )
    service.route("POST", "/api/instances", lambda _request: next(answers))

    async def scenario(client: Any) -> None:
        created = await answer(client.create("job-1", "RTX 4090 24GB", "pytorch-jupyter", labels={"team": "ml"}))
        assert created == view("inst_1", "creating")

    run(scenario)
    first, second = service.sent("POST", "/api/instances")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.body == {
        "name": "job-1",
        "productName": "RTX 4090 24GB",
        "templateId": "pytorch-jupyter",
        "labels": {"team": "ml"},
    }


def test_an_error_answer_is_an_api_error_and_is_not_retried(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    error = {
        "code": "VALIDATION_ERROR",
        "message": "The request is invalid; see details.",
        "requestId": "req-1",
        "details": [{"field": "name", "message": "String should match pattern"}],
    }
    service.route("GET", "/api/instances/..%2Fsync", (400, {"error": error}))  # one path segment, quoted
    service.route("GET", "/api/products", (502, "<html>Bad gateway</html>"))

    async def scenario(client: Any) -> None:
        with pytest.raises(ApiError) as invalid:
            await answer(client.get("../sync"))
        assert str(invalid.value) == "VALIDATION_ERROR: name: String should match pattern (HTTP 400, request req-1)"
        with pytest.raises(ApiError) as proxy:
            await answer(client.products())
        assert (proxy.value.status, proxy.value.code) == (502, "HTTP_502")

    run(scenario)
    assert len(service.sent("GET", "/api/instances/..%2Fsync")) == 1  # a 400 is an answer
    assert len(service.sent("GET", "/api/products")) == FAST.attempts  # a 502 may be sent again


def test_paging_follows_the_cursor_and_names_find_the_live_instance(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    def page(request: Request) -> tuple[int, Any]:
        if request.param("name") == "job-1":
            return 200, {"instances": [view("inst_9", "ready")], "total": 1, "nextCursor": None}
        if request.param("cursor") is None:
            return 200, {"instances": [view("inst_1", "ready"), view("inst_2", "ready")], "nextCursor": "c2"}
        return 200, {"instances": [view("inst_3", "ready")], "nextCursor": None}

    service.route("GET", "/api/instances", page)

    async def scenario(client: Any) -> None:
        found = await items(client.iter_instances(status="ready", labels={"team": "ml", "tier": "gold"}))
        assert [i["instanceId"] for i in found] == ["inst_1", "inst_2", "inst_3"]
        assert (await answer(client.get_by_name("job-1")))["instanceId"] == "inst_9"
        with pytest.raises(ApiError) as missing:
            await answer(client.get_by_name("job-2"))
        assert missing.value.code == "INSTANCE_NOT_FOUND"

    run(scenario)
    first = service.sent("GET", "/api/instances")[0]
    assert first.query["label"] == ["team=ml", "tier=gold"] and first.param("status") == "ready"


def test_waiting_long_polls_until_the_status_and_stops_at_stopped(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    statuses = {"inst_1": iter(["creating", "starting", "ready"]), "inst_2": iter(["stopped"])}
    for instance_id, seen in statuses.items():
        service.route(
            "GET",
            f"/api/instances/{instance_id}",
            lambda _request, i=instance_id, s=seen: (200, view(i, next(s), statusReason="USER")),  # type: ignore[misc]
        )
    changes: list[str] = []

    async def scenario(client: Any) -> None:
        changes.clear()
        ready = await answer(client.wait_for("inst_1", timeout=10, on_change=lambda v: changes.append(v["status"])))
        assert ready["status"] == "ready"
        with pytest.raises(InstanceStopped) as stopped:
            await answer(client.wait_for("inst_2", timeout=10))
        assert stopped.value.needs == "started"

    run(scenario)
    assert changes == ["creating", "starting", "ready"]
    polls = service.sent("GET", "/api/instances/inst_1")
    # The first look asks for any status (so a wait that cannot end well ends at once).
    assert set(polls[0].param("waitFor").split(",")) == {s.value for s in Status}  # type: ignore[union-attr]
    assert all(float(p.param("timeout") or 0) <= 30 for p in polls)


def event(event_id: int, status: str) -> list[str]:
    body = {"instanceId": "inst_1", "name": "job-1", "status": status}
    return [f"id: {event_id}", f"event: instance.{status}", f"data: {json.dumps(body)}", ""]


def test_the_event_stream_resumes_after_a_drop_from_the_last_id(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    streams = iter([[": hello", *event(1, "starting")], [*event(1, "starting"), *event(2, "ready")]])
    service.route("GET", "/api/events/stream", lambda _request: (200, next(streams, [])))

    async def scenario(client: Any) -> None:
        got = await items(client.iter_events(), at_most=2)
        assert [(e.id, e.type, e.status) for e in got] == [
            (1, "instance.starting", "starting"),
            (2, "instance.ready", "ready"),
        ]

    run(scenario)
    first, second = service.sent("GET", "/api/events/stream")[:2]
    assert "last-event-id" not in first.headers and second.headers["last-event-id"] == "1"


def test_stored_events_end_without_follow_and_a_refused_stream_raises(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    service.route("GET", "/api/instances/inst_1/events/stream", (200, [*event(3, "ready")]))
    refused = {"error": {"code": "UNAUTHORIZED", "message": "A valid API key is required.", "requestId": "r"}}
    service.route("GET", "/api/events/stream", (401, refused))

    async def scenario(client: Any) -> None:
        stored = await items(client.iter_events("inst_1", after=0, follow=False))
        assert [e.id for e in stored] == [3]
        with pytest.raises(ApiError) as unauthorized:
            await items(client.iter_events())
        assert unauthorized.value.status == 401

    run(scenario)
    (stored,) = service.sent("GET", "/api/instances/inst_1/events/stream")
    assert stored.param("follow") == "false" and stored.headers["last-event-id"] == "0"


def test_health_answers_its_report_even_when_unhealthy(run: Callable[[Scenario], None], service: FakeService) -> None:
    service.route("GET", "/health", (503, {"status": "unhealthy", "checks": {}}))

    async def scenario(client: Any) -> None:
        assert (await answer(client.health()))["status"] == "unhealthy"

    run(scenario)


def test_an_unreachable_service_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused

    async def main() -> None:
        with Client(url, retry=FAST) as client, pytest.raises(ServiceConnectionError) as blocking:
            client.list_instances()
        async with AsyncClient(url, retry=FAST) as async_client:
            with pytest.raises(ServiceConnectionError) as awaited:
                await async_client.list_instances()
        for error in (blocking.value, awaited.value):  # what follows is httpx's own words, sync or async
            assert str(error).startswith(f"cannot reach the service at {url} (")

    asyncio.run(main())
