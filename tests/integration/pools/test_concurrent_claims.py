"""Concurrent claims: on two replicas sharing PostgreSQL, no member is handed out twice and the pool never
counts past max; an Idempotency-Key replays a claim rather than taking a second member."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from novita_gpu.services import Services
from tests.harness import Harness, harness_on, second_replica
from tests.integration.pools.conftest import claim, make_pool, until_members


@pytest.fixture
async def two_replicas(tmp_path: Path) -> AsyncIterator[tuple[Harness, httpx.AsyncClient, Services]]:
    """Two services on one PostgreSQL database and one emulator: the harness's, and a second one."""
    async with harness_on("postgres", tmp_path) as h, second_replica(h) as (other, services):
        yield h, other, services


@pytest.mark.postgres
async def test_thirty_concurrent_claims_on_two_replicas_never_share_a_member(
    two_replicas: tuple[Harness, httpx.AsyncClient, Services],
) -> None:
    h, other, other_services = two_replicas
    await make_pool(h, minReady=3, minStopped=3, max=10)
    for _ in range(3):  # both replicas' keepers refill at once: the pool's lock lets one plan at a time
        await asyncio.gather(h.services.pool_keeper.tick(), other_services.pool_keeper.tick())
        assert (await h.http.get("/api/pools/gpus")).json()["members"]["total"] == 6
    await until_members(h, ready=3, stopped=3, total=6)
    clients = [h.http, other]
    answers = await asyncio.gather(
        *(clients[i % 2].post("/api/pools/gpus/claim", json={"name": f"job-{i}"}) for i in range(30))
    )
    codes = Counter(a.status_code for a in answers)
    assert codes == {201: 10, 409: 20}, codes
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"POOL_EXHAUSTED"}
    won = [a.json() for a in answers if a.status_code == 201]
    assert len({w["instanceId"] for w in won}) == 10
    assert len({w["novitaInstanceId"] for w in won if w["novitaInstanceId"]}) == sum(
        1 for w in won if w["novitaInstanceId"]
    )
    sources = Counter(w["claim"]["source"] for w in won)
    assert sources == {"ready": 3, "stopped": 3, "cold": 4}, sources

    # Each claimed record holds its own Novita instance once all are up; nothing else lives there.
    for w in won:
        await h.until_status(w["instanceId"], "ready")
    held = [(await h.instance(w["instanceId"]))["novitaInstanceId"] for w in won]
    assert len(set(held)) == 10
    assert {i["id"] for i in h.live_upstream()} == set(held)


async def test_a_claim_retried_with_its_idempotency_key_is_replayed_not_taken_twice(harness: Harness) -> None:
    await make_pool(harness, minReady=2, max=4)
    await until_members(harness, ready=2, total=2)
    headers = {"Idempotency-Key": "claim-once"}
    first = await harness.http.post("/api/pools/gpus/claim", json={"name": "once"}, headers=headers)
    again = await harness.http.post("/api/pools/gpus/claim", json={"name": "once"}, headers=headers)
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["instanceId"] == first.json()["instanceId"]
    other = await harness.http.post("/api/pools/gpus/claim", json={"name": "twice"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    view = (await harness.http.get("/api/pools/gpus")).json()
    assert view["members"]["claimed"] == 1


async def test_a_create_naming_a_pool_is_a_claim_and_spec_fields_are_refused(harness: Harness) -> None:
    await make_pool(harness, minReady=1, max=2)
    await until_members(harness, ready=1, total=1)
    body = {"name": "via-create", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter", "pool": "gpus"}
    made = await harness.http.post("/api/instances", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "ready" and made.json()["claim"]["source"] == "ready"

    wrong = await harness.http.post("/api/instances", json={**body, "name": "x", "productName": "RTX 3090 24GB"})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "POOL_SPEC_MISMATCH"
    extra = await harness.http.post("/api/instances", json={**body, "name": "y", "rootfsSize": 100})
    assert extra.status_code == 409 and extra.json()["error"]["code"] == "POOL_SPEC_FIELD"
    assert extra.json()["error"]["details"][0]["field"] == "rootfsSize"
    missing = await harness.http.post("/api/instances", json={**body, "name": "z", "pool": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "POOL_NOT_FOUND"
    taken = await harness.http.post("/api/pools/gpus/claim", json={"name": "via-create"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "NAME_TAKEN"


async def test_bad_pool_bodies_are_refused_with_the_field(harness: Harness) -> None:
    cases = [
        ({"name": "p", "max": 1, "minReady": 101}, "VALIDATION_ERROR"),
        ({"name": "p", "max": 0}, "VALIDATION_ERROR"),
        ({"name": "p" * 41, "max": 1}, "VALIDATION_ERROR"),
        ({"name": "p", "max": 1, "productName": "No Such GPU"}, None),
        ({"name": "p\u0000", "max": 1}, "VALIDATION_ERROR"),
    ]
    for fields, code in cases:
        body = {"productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter", **fields}
        answer = await harness.http.post("/api/pools", json=body)
        assert answer.status_code == 400, (fields, answer.text)
        if code:
            assert answer.json()["error"]["code"] == code
    huge = b'{"name": "p", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter", "max": 1e999}'
    answer = await harness.http.post("/api/pools", content=huge, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR"
    await make_pool(harness, max=1)
    again = await harness.http.post(
        "/api/pools", json={"name": "gpus", "max": 1, "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
    )
    assert again.status_code == 409
    assert (await harness.http.get("/api/pools/nope")).status_code == 404
    assert (await claim(harness, name="ok"))["claim"]["source"] == "cold"
