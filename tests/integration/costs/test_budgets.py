"""Budgets per API key, end to end: keys create instances over HTTP, time runs on the shared clock, and the
budget worker's steps run as the app runs them. A crossing refuses creates, emits budget.exceeded (an
account event and a signed webhook, sent by the webhook dispatcher), and with stopAll stops that key's
instances and nobody else's; an admin key sets budgets for others, which they cannot lift."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from novita_gpu.costs.schemas import AccountEventsAnswer, BudgetAnswer
from novita_gpu.web.auth import owner_id
from tests.fixtures.databases import fresh_database
from tests.fixtures.receivers import Receiver
from tests.harness import SEED_BODY, Harness

ALICE, BOB, ROOT = "alice-key-0123456789", "bob-key-0123456789", "root-key-0123456789"
HOUR = 3600.0
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def key(k: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"}


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(
        tmp_path, api_keys=f"{ALICE},{BOB}", admin_api_keys=ROOT, webhook_secret=SECRET, auto_stop_idle_minutes=0
    ).start()
    try:
        yield h
    finally:
        await h.stop()


async def create(h: Harness, k: str, **body: Any) -> Any:
    return await h.http.post("/api/instances", json={**SEED_BODY, **body}, headers=key(k))


async def ready(h: Harness, k: str, name: str) -> dict[str, Any]:
    response = await create(h, k, name=name)
    assert response.status_code == 201, response.text
    instance_id = response.json()["instanceId"]

    async def done() -> bool:
        view = (await h.http.get(f"/api/instances/{instance_id}", headers=key(k))).json()
        return bool(view["status"] == "ready")

    await h.run_until(done)
    view: dict[str, Any] = (await h.http.get(f"/api/instances/{instance_id}", headers=key(k))).json()
    return view


async def budget(h: Harness, k: str, **params: str) -> Any:
    return await h.http.get("/api/budget", params=params, headers=key(k))


async def status(h: Harness, k: str, instance_id: str) -> str:
    return str((await h.http.get(f"/api/instances/{instance_id}", headers=key(k))).json()["status"])


async def test_stop_all_stops_the_keys_instances_and_nobody_elses(keyed: Harness, receiver: Receiver) -> None:
    h = keyed
    body = {"monthlyLimitUsd": 1.0, "onExceeded": "stopAll", "webhookUrl": receiver.url}
    put = await h.http.put("/api/budget", json=body, headers=key(ALICE))
    assert put.status_code == 200, put.text
    assert put.json()["setBy"] == "self" and put.json()["spentUsd"] == 0
    a1, a2 = await ready(h, ALICE, "a1"), await ready(h, ALICE, "a2")
    b1 = await ready(h, BOB, "b1")
    rate = a1["pricePerHour"] + a2["pricePerHour"]

    before = (await budget(h, ALICE)).json()
    BudgetAnswer.model_validate(before)
    assert before["ratePerHourUsd"] == pytest.approx(rate) and before["exceeded"] is False
    assert before["projectedUsd"] > before["spentUsd"] + rate * 24  # a month's rest at this rate
    hours = (1.0 - before["spentUsd"]) / rate
    h.clock.advance(hours * HOUR - 60)  # a minute before the crossing
    await h.services.budgets.step()
    assert {await status(h, ALICE, a["instanceId"]) for a in (a1, a2)} == {"ready"}
    assert 0 < await h.services.budgets.seconds_until_next(h.clock.now()) <= 60  # it wakes at the crossing
    assert (await create(h, ALICE, name="a3")).status_code == 201  # not yet spent

    h.clock.advance(90)
    refused = await create(h, ALICE, name="a4")  # refused at once, before the worker's next step
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "BUDGET_EXCEEDED"
    assert "monthly budget" in refused.json()["error"]["message"]
    await h.services.budgets.step()
    for a in (a1, a2):
        view = (await h.http.get(f"/api/instances/{a['instanceId']}", headers=key(ALICE))).json()
        assert view["status"] == "stopping" and view["statusReason"] == "BUDGET_EXCEEDED"
        assert "Budget exceeded" in view["statusMessage"]
    assert await status(h, BOB, b1["instanceId"]) == "ready"  # another key's instance is never touched
    assert (await create(h, BOB, name="b2")).status_code == 201
    for a in (a1, a2):

        async def stopped(instance_id: str = a["instanceId"]) -> bool:
            return await status(h, ALICE, instance_id) == "stopped"

        await h.run_until(stopped)
    started = await h.http.post(f"/api/instances/{a1['instanceId']}/start", headers=key(ALICE))
    assert started.status_code == 403 and started.json()["error"]["code"] == "BUDGET_EXCEEDED"

    after = (await budget(h, ALICE)).json()
    assert after["exceeded"] is True and after["exceededAt"] is not None and after["ratePerHourUsd"] < rate
    events = (await h.http.get("/api/budget/events", headers=key(ALICE))).json()
    AccountEventsAnswer.model_validate(events)
    [event] = events["events"]
    assert event["event"] == "budget.exceeded" and event["payload"]["data"]["onExceeded"] == "stopAll"
    assert set(event["payload"]["data"]["stoppedInstances"]) >= {a1["instanceId"], a2["instanceId"]}
    assert (await h.http.get("/api/budget/events", headers=key(BOB))).json()["events"] == []
    await h.services.budgets.step()  # once per month: no second event
    assert len((await h.http.get("/api/budget/events", headers=key(ALICE))).json()["events"]) == 1
    await h.services.dispatcher.tick()  # the webhook dispatcher sends it, as it sends instance events
    [(headers, sent)] = receiver.hits
    assert sent["event"] == "budget.exceeded" and sent["apiKey"] == owner_id(ALICE)
    assert headers["x-webhook-event"] == "budget.exceeded" and headers["webhook-signature"].startswith("v1,")
    delivered = (await h.http.get("/api/budget/events", headers=key(ALICE))).json()["events"][0]["webhooks"]
    assert [(d["url"], d["status"]) for d in delivered] == [(receiver.url, "delivered")]


async def test_an_admin_sets_budgets_for_others_and_refuse_creates_stops_nothing(keyed: Harness) -> None:
    h = keyed
    bob = owner_id(BOB)
    assert (await budget(h, BOB, apiKey=owner_id(ALICE))).status_code == 403  # not an admin
    assert (
        await h.http.put(
            "/api/budget", params={"apiKey": owner_id(ALICE)}, json={"monthlyLimitUsd": 9}, headers=key(BOB)
        )
    ).status_code == 403
    set_by_root = await h.http.put(
        "/api/budget", params={"apiKey": bob}, json={"monthlyLimitUsd": 0.5}, headers=key(ROOT)
    )
    assert set_by_root.status_code == 200, set_by_root.text
    assert set_by_root.json()["setBy"] == "admin" and set_by_root.json()["onExceeded"] == "refuseCreates"
    lifted = await h.http.put("/api/budget", json={"monthlyLimitUsd": 1000}, headers=key(BOB))
    assert lifted.status_code == 403 and lifted.json()["error"]["code"] == "FORBIDDEN"
    assert (await h.http.delete("/api/budget", headers=key(BOB))).status_code == 403
    assert (await budget(h, BOB)).json()["monthlyLimitUsd"] == 0.5  # bob reads his own

    b1 = await ready(h, BOB, "b1")
    h.clock.advance(0.5 / b1["pricePerHour"] * HOUR + 60)
    await h.services.budgets.step()
    assert await status(h, BOB, b1["instanceId"]) == "ready"  # refuseCreates stops nothing
    refused = await create(h, BOB, name="b2")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "BUDGET_EXCEEDED"
    [event] = (await h.http.get("/api/budget/events", params={"apiKey": bob}, headers=key(ROOT))).json()["events"]
    assert event["payload"]["data"]["stoppedInstances"] == []
    assert (await h.http.post(f"/api/instances/{b1['instanceId']}/stop", headers=key(BOB))).status_code == 202

    raised = await h.http.put("/api/budget", params={"apiKey": bob}, json={"monthlyLimitUsd": 100}, headers=key(ROOT))
    assert raised.json()["exceeded"] is False
    assert (await create(h, BOB, name="b3")).status_code == 201

    everyone = (await h.http.get("/api/costs", params={"groupBy": "apiKey"}, headers=key(ROOT))).json()
    assert {g["key"] for g in everyone["groups"]} == {bob}  # an admin's report covers every key
    own = (await h.http.get("/api/costs", params={"groupBy": "apiKey"}, headers=key(ALICE))).json()
    assert own["groups"] == [] and own["totalUsd"] == 0


async def test_a_new_month_starts_from_zero(keyed: Harness) -> None:
    h = keyed
    assert (await h.http.put("/api/budget", json={"monthlyLimitUsd": 0.1}, headers=key(ALICE))).status_code == 200
    a1 = await ready(h, ALICE, "a1")
    h.clock.advance(HOUR)
    assert (await create(h, ALICE, name="a2")).status_code == 403
    assert (await h.http.post(f"/api/instances/{a1['instanceId']}/stop", headers=key(ALICE))).status_code == 202

    async def stopped() -> bool:
        return await status(h, ALICE, a1["instanceId"]) == "stopped"

    await h.run_until(stopped)
    month = (await budget(h, ALICE)).json()["month"]
    h.clock.advance(31 * 24 * HOUR)
    fresh = (await budget(h, ALICE)).json()
    assert fresh["month"] != month and fresh["spentUsd"] == 0 and fresh["exceeded"] is False
    assert (await create(h, ALICE, name="a2")).status_code == 201


async def test_stop_all_and_costs_on_postgresql(tmp_path: Path) -> None:
    """The same on PostgreSQL: row locks around stopAll, the ledger written by the flush hook, the report."""
    async with fresh_database("postgres", tmp_path) as url:
        h = await Harness(tmp_path, database_url=url, api_keys=f"{ALICE},{BOB}", auto_stop_idle_minutes=0).start()
        try:
            assert (
                await h.http.put(
                    "/api/budget", json={"monthlyLimitUsd": 0.2, "onExceeded": "stopAll"}, headers=key(ALICE)
                )
            ).status_code == 200
            a1, b1 = await ready(h, ALICE, "a1"), await ready(h, BOB, "b1")
            h.clock.advance(HOUR)
            await h.services.budgets.step()
            assert await status(h, ALICE, a1["instanceId"]) == "stopping"
            assert await status(h, BOB, b1["instanceId"]) == "ready"

            async def stopped() -> bool:
                return await status(h, ALICE, a1["instanceId"]) == "stopped"

            await h.run_until(stopped)
            report = (await h.http.get("/api/costs", headers=key(ALICE))).json()
            [line] = report["instances"]
            view = (await h.http.get(f"/api/instances/{a1['instanceId']}", headers=key(ALICE))).json()
            assert abs(line["costUsd"] - view["cost"]["accruedUsd"]) < 0.005 and line["billingNow"] is False
            assert 0.29 < line["costUsd"] < 0.30  # an hour and its boot at $0.29
        finally:
            await h.stop()
