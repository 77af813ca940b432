"""Warm pools through `Client` and `AsyncClient` against a stand-in service: the requests each method sends
and what it gives back, one scenario per test run through each client (as test_volumes.py does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import FakeService, Request, Scenario, answer
from novita_gpu_client import ApiError

POOL_ID = "pool_0123456789abcdef0123"


def pool(name: str = "gpus", **more: Any) -> dict[str, Any]:
    return {
        "poolId": POOL_ID,
        "name": name,
        "status": "active",
        "minReady": 1,
        "minStopped": 2,
        "max": 4,
        "members": {"ready": 1, "stopped": 2, "warming": 0, "claimed": 0, "total": 3},
        **more,
    }


def claimed(source: str, status: str = "ready", **more: Any) -> dict[str, Any]:
    return {
        "instanceId": "inst_1",
        "name": "train-1",
        "status": status,
        "pool": {"poolId": POOL_ID, "name": "gpus", "state": "claimed"},
        "message": f"Claimed from pool gpus: {source}.",
        "claim": {"pool": "gpus", "source": source},
        **more,
    }


def error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message, "requestId": "req-1"}}


def test_create_sends_the_spec_and_targets_in_the_apis_words(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    service.route("POST", "/api/pools", (201, pool()))

    async def scenario(client: Any) -> None:
        made = await answer(
            client.create_pool(
                "gpus",
                "RTX 4090 24GB",
                "pytorch-jupyter",
                max=4,
                gpu_num=2,
                region="US-TX-04",
                billing_mode="spot",
                rootfs_size=60,
                volumes=[("datasets", "/data"), "scratch"],
                health_check_path="/healthz",
                min_ready=1,
                min_stopped=2,
                idle_minutes=30,
                return_on_auto_stop=True,
                prewarm=True,
            )
        )
        assert made["poolId"] == POOL_ID
        await answer(client.create_pool("small", "RTX 4090 24GB", 101, max=1))

    run(scenario)
    full, small = service.sent("POST", "/api/pools")
    assert full.body == {
        "name": "gpus",
        "productName": "RTX 4090 24GB",
        "templateId": "pytorch-jupyter",
        "gpuNum": 2,
        "region": "US-TX-04",
        "billingMode": "spot",
        "rootfsSize": 60,
        "volumes": [{"volume": "datasets", "mountPoint": "/data"}, {"volume": "scratch"}],
        "healthCheck": {"path": "/healthz"},
        "minReady": 1,
        "minStopped": 2,
        "max": 4,
        "idleMinutes": 30,
        "returnOnAutoStop": True,
        "prewarm": True,
    }
    # What is left out is the server's default.
    assert small.body == {
        "name": "small",
        "productName": "RTX 4090 24GB",
        "templateId": 101,
        "minReady": 0,
        "minStopped": 0,
        "max": 1,
    }
    assert full.headers["authorization"] == "Bearer sk-test"


def test_list_get_update_and_delete(run: Callable[[Scenario], None], service: FakeService) -> None:
    service.route("GET", "/api/pools", (200, {"pools": [pool(), pool("cpus")]}))
    service.route("GET", "/api/pools/gpus", (200, pool()))
    service.route("GET", "/api/pools/..%2Fclaim", (200, pool("odd")))  # one path segment, quoted
    service.route("PATCH", "/api/pools/gpus", (200, pool(minReady=0, idleMinutes=15)))
    service.route("DELETE", "/api/pools/gpus", (202, pool(status="draining")))
    service.route("GET", "/api/pools/gone", error(404, "POOL_NOT_FOUND", "No pool named 'gone'."))

    async def scenario(client: Any) -> None:
        listed = await answer(client.list_pools())
        assert [p["name"] for p in listed["pools"]] == ["gpus", "cpus"]
        assert (await answer(client.get_pool("gpus")))["members"]["stopped"] == 2
        assert (await answer(client.get_pool("../claim")))["name"] == "odd"
        changed = await answer(client.update_pool("gpus", min_ready=0, idle_minutes=15, prewarm=False))
        assert changed["minReady"] == 0
        assert (await answer(client.delete_pool("gpus")))["status"] == "draining"
        with pytest.raises(ApiError) as missing:
            await answer(client.get_pool("gone"))
        assert missing.value.status == 404 and missing.value.code == "POOL_NOT_FOUND"

    run(scenario)
    (patch,) = service.sent("PATCH", "/api/pools/gpus")
    assert patch.body == {"minReady": 0, "idleMinutes": 15, "prewarm": False}  # only what is given (False is)
    assert len(service.sent("GET", "/api/pools/gone")) == 1  # a 404 is an answer: never sent again


def test_a_claim_says_its_source_and_is_retried_with_the_same_idempotency_key(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    answers = iter(
        [
            (503, {"error": {"code": "UPSTREAM_UNAVAILABLE", "message": "Try again."}}, {"Retry-After": "0"}),
            (201, claimed("ready")),
        ]
    )
    service.route("POST", "/api/pools/gpus/claim", lambda _request: next(answers))

    async def scenario(client: Any) -> None:
        got = await answer(
            client.claim(
                "gpus",
                "train-1",
                labels={"team": "ml"},
                webhook_url="https://hooks.example.com/x",
                auto_stop_minutes=20,
                max_runtime_minutes=240,
            )
        )
        assert got["claim"] == {"pool": "gpus", "source": "ready"}
        assert got["status"] == "ready" and got["pool"]["state"] == "claimed"

    run(scenario)
    first, second = service.sent("POST", "/api/pools/gpus/claim")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["idempotency-key"].startswith("sdk-")
    assert first.body == {
        "name": "train-1",
        "labels": {"team": "ml"},
        "webhookUrl": "https://hooks.example.com/x",
        "autoStopMinutes": 20,
        "maxRuntimeMinutes": 240,
    }


def test_a_claim_past_max_is_refused_once_and_a_given_key_is_sent(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    def handler(request: Request) -> tuple[int, Any]:
        if request.headers.get("idempotency-key") == "job-7":
            return 201, claimed("cold", status="creating", autoStop={"idleMinutes": 5})
        return error(409, "POOL_EXHAUSTED", "Pool 'gpus' has all its 4 members claimed.")

    service.route("POST", "/api/pools/gpus/claim", handler)

    async def scenario(client: Any) -> None:
        with pytest.raises(ApiError) as exhausted:
            await answer(client.claim("gpus", "train-2"))
        assert exhausted.value.status == 409 and exhausted.value.code == "POOL_EXHAUSTED"
        cold = await answer(client.claim("gpus", "train-1", auto_stop={"idleMinutes": 5}, idempotency_key="job-7"))
        assert cold["claim"]["source"] == "cold" and cold["status"] == "creating"

    run(scenario)
    refused, keyed = service.sent("POST", "/api/pools/gpus/claim")
    assert refused.body == {"name": "train-2"}
    assert keyed.body == {"name": "train-1", "autoStop": {"idleMinutes": 5}}


def test_a_create_with_a_pool_claims_and_a_stop_can_return_the_instance(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    service.route("POST", "/api/instances", (201, claimed("stopped", status="starting")))
    back = {"instanceId": "inst_1", "status": "stopping", "message": "Returned to pool gpus as a stopped member."}
    service.route("POST", "/api/instances/inst_1/stop", (202, back))
    service.route("POST", "/api/instances/stop", (202, back))

    async def scenario(client: Any) -> None:
        made = await answer(client.create("train-1", "RTX 4090 24GB", "pytorch-jupyter", pool="gpus"))
        assert made["claim"]["source"] == "stopped"
        returned = await answer(client.stop("inst_1", return_to_pool=True))
        assert returned["message"] == "Returned to pool gpus as a stopped member."
        await answer(client.stop("inst_1"))
        await answer(client.stop_by_name("train-1", return_to_pool=True))
        await answer(client.stop_by_name("train-1"))

    run(scenario)
    (create,) = service.sent("POST", "/api/instances")
    assert create.body == {
        "name": "train-1",
        "productName": "RTX 4090 24GB",
        "templateId": "pytorch-jupyter",
        "pool": "gpus",
    }
    returning, plain = service.sent("POST", "/api/instances/inst_1/stop")
    assert returning.body == {"returnToPool": True}
    assert plain.body is None  # a plain stop sends no body, as before pools
    by_name, plain_by_name = service.sent("POST", "/api/instances/stop")
    assert by_name.body == {"instanceName": "train-1", "returnToPool": True}
    assert plain_by_name.body == {"instanceName": "train-1"}
