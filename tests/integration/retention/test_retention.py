"""History retention: terminated instances, finished webhook deliveries and idempotency keys are
forgotten after their time, in batches; live instances and pending deliveries never are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from novita_gpu.kit.serving import BackgroundServer, free_port
from novita_gpu.kit.tables import IdempotencyRecord, Instance, InstanceEvent, WebhookAttempt, WebhookDelivery
from novita_gpu.retention import Retention
from tests.harness import SEED_BODY, Harness, harness_on

DAY = 24 * 3600.0


async def count(harness: Harness, model: Any, *where: Any) -> int:
    async with harness.services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def deliver_all(harness: Harness) -> None:
    while await harness.services.dispatcher.tick():
        pass
    assert (await harness.services.dispatcher.backlog())[0] == 0


async def terminated(harness: Harness, receiver_url: str) -> str:
    created = await harness.create(webhookUrl=receiver_url)
    await harness.until_status(created["instanceId"], "ready")
    assert (await harness.http.delete(f"/api/instances/{created['instanceId']}")).status_code == 202
    await harness.until_status(created["instanceId"], "terminated")
    await deliver_all(harness)
    return str(created["instanceId"])


async def test_a_terminated_instance_is_kept_for_the_retention_period_then_forgotten(
    harness: Harness, receiver_url: str
) -> None:
    gone = await terminated(harness, receiver_url)
    retention = harness.services.retention
    assert harness.settings.history_retention_days == 30
    harness.clock.advance(30 * DAY - 60)
    assert await retention.sweep() == {
        "idempotency_keys": 0,
        "webhook_deliveries": 0,
        "instances": 0,
        "audit_events": 0,
    }
    assert (await harness.instance(gone))["status"] == "terminated"
    assert [e["to"] for e in await harness.events(gone)][-1] == "terminated"

    harness.clock.advance(120)
    swept = await retention.sweep()
    assert swept["instances"] == 1 and swept["webhook_deliveries"] > 0
    response = await harness.http.get(f"/api/instances/{gone}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "INSTANCE_NOT_FOUND"
    listed = (await harness.http.get("/api/instances?status=terminated")).json()
    assert listed["instances"] == [] and listed["total"] == 0
    for model in (Instance, InstanceEvent, WebhookDelivery, WebhookAttempt):
        assert await count(harness, model) == 0, model.__name__
    metrics = (await harness.http.get("/api/metrics")).json()
    assert metrics["retention"]["instances"] == 1 and metrics["retention"]["webhookDeliveries"] > 0


async def test_a_live_instance_keeps_its_history_and_pending_deliveries_are_never_touched(
    harness: Harness, receiver_url: str
) -> None:
    live = (await harness.create(webhookUrl=receiver_url))["instanceId"]
    await harness.until_status(live, "ready")
    await deliver_all(harness)
    delivered = await count(harness, WebhookDelivery, WebhookDelivery.status == "delivered")
    assert delivered == 5  # creating → ready
    # A stop whose webhooks are still waiting (the dispatcher does not run while the clock moves).
    assert (await harness.http.post(f"/api/instances/{live}/stop")).status_code == 202
    await harness.until_status(live, "stopped")
    pending = await count(harness, WebhookDelivery, WebhookDelivery.status == "pending")
    assert pending == 2

    harness.clock.advance(31 * DAY)
    swept = await harness.services.retention.sweep()
    assert swept == {"idempotency_keys": 0, "webhook_deliveries": delivered, "instances": 0, "audit_events": 0}
    assert await count(harness, WebhookDelivery) == pending
    flow = [e["to"] for e in await harness.events(live)]
    assert flow == ["creating", "starting", "running", "health_checking", "ready", "stopping", "stopped"]


async def test_idempotency_keys_are_forgotten_after_their_ttl(harness: Harness) -> None:
    body = {"name": "keyed", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
    first = await harness.http.post("/api/instances", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    harness.clock.advance(harness.settings.idempotency_ttl_seconds - 1)
    assert (await harness.services.retention.sweep())["idempotency_keys"] == 0
    replay = await harness.http.post("/api/instances", json=body, headers={"Idempotency-Key": "k-1"})
    assert replay.json()["instanceId"] == first.json()["instanceId"]
    harness.clock.advance(2)
    assert (await harness.services.retention.sweep())["idempotency_keys"] == 1
    assert await count(harness, IdempotencyRecord) == 0


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_rows_go_in_batches_until_none_is_left(store: str, tmp_path: Path, receiver_url: str) -> None:
    async with harness_on(store, tmp_path) as harness:
        keyed = {"Idempotency-Key": "batch-key"}
        await harness.http.post("/api/instances", json={**SEED_BODY, "name": "keyed"}, headers=keyed)
        ids = [await terminated(harness, receiver_url) for _ in range(5)]
        harness.clock.advance(31 * DAY)
        services = harness.services
        retention = Retention(
            services.db, harness.clock, harness.settings, services.metrics, lambda: None, batch_rows=2
        )
        assert await retention.sweep() == {
            "idempotency_keys": 1,
            "webhook_deliveries": 5 * 7,
            "instances": 5,
            "audit_events": 0,
        }
        assert await count(harness, Instance, Instance.id.in_(ids)) == 0
        assert await count(harness, Instance) == 1  # the keyed one: live, so kept


async def test_zero_days_keeps_all_history(tmp_path: Path, receiver_url: str) -> None:
    harness = await Harness(tmp_path, history_retention_days=0, audit_retention_days=0).start()
    try:
        gone = await terminated(harness, receiver_url)
        harness.clock.advance(3650 * DAY)
        assert await harness.services.retention.sweep() == {
            "idempotency_keys": 0,
            "webhook_deliveries": 0,
            "instances": 0,
            "audit_events": 0,
        }
        assert (await harness.instance(gone))["status"] == "terminated"
    finally:
        await harness.stop()


async def test_an_instance_whose_webhooks_are_still_owed_is_kept_until_they_are_delivered(tmp_path: Path) -> None:
    harness = await Harness(tmp_path, webhook_max_age_seconds=90 * DAY).start()
    port = free_port()
    receiver = BackgroundServer(Starlette(routes=[Route("/webhook", ok, methods=["POST"])]), port=port)
    try:
        created = await harness.create(webhookUrl=f"http://127.0.0.1:{port}/webhook")  # nobody listens yet
        await harness.until_status(created["instanceId"], "ready")
        assert (await harness.http.delete(f"/api/instances/{created['instanceId']}")).status_code == 202
        await harness.until_status(created["instanceId"], "terminated")
        await harness.services.dispatcher.tick()
        harness.clock.advance(31 * DAY)
        assert (await harness.services.retention.sweep())["instances"] == 0
        assert (await harness.instance(created["instanceId"]))["status"] == "terminated"

        await receiver.start()
        while (await harness.services.dispatcher.backlog())[0]:
            await harness.services.dispatcher.tick()
            harness.clock.advance(600)
        harness.clock.advance(31 * DAY)
        assert (await harness.services.retention.sweep())["instances"] == 1
    finally:
        await receiver.stop()
        await harness.stop()


async def ok(_: Request) -> Response:
    return Response("OK")
