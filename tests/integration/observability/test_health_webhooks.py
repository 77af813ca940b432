"""/health and webhooks: a receiver that is down or misconfigured is its owner's problem, reported in the
`webhooks` check but not degrading the service; the service failing to deliver (due deliveries left
unattempted, most receivers unreachable) degrades it. The service and emulator share a ManualClock, the
dispatcher sends over real HTTP and real DNS (`.invalid` never resolves, RFC 6761)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from novita_gpu.observability.schemas import HealthAnswer
from tests.harness import Harness, harness_on

NOWHERE = "http://no-such-host.invalid/hook?token=kept-out-of-health"
ADMIN_KEY = "health-admin-key-0123456789"
USER_KEY = "health-user-key-0123456789"


@pytest.fixture(params=["sqlite", "postgres"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The figures are SQL (a window function among them): both stores."""
    async with harness_on(request.param, tmp_path) as harness:
        yield harness


async def ready(h: Harness, *bodies: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
    """Create one instance per body and run them to ready, the dispatcher attempting what is due."""
    ids = []
    for body in bodies:
        answer = await h.http.post(
            "/api/instances",
            json={
                "name": f"hooked-{uuid.uuid4().hex[:8]}",
                "productName": "RTX 4090 24GB",
                "templateId": "pytorch-jupyter",
                **body,
            },
            headers=headers or {},
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["instanceId"])

    async def all_ready() -> bool:
        await h.services.dispatcher.tick()
        views = [await h.http.get(f"/api/instances/{i}", headers=headers or {}) for i in ids]
        return all(view.json()["status"] == "ready" for view in views)

    await h.run_until(all_ready)
    return ids


async def run_dispatcher(h: Harness, seconds: float, step: float = 5.0) -> None:
    """`seconds` of emulated time with the dispatcher attempting every delivery when it is due."""
    waited = 0.0
    while waited < seconds:
        await h.services.dispatcher.tick()
        h.clock.advance(step)
        waited += step
    await h.services.dispatcher.tick()


async def health(h: Harness, key: str | None = None) -> dict[str, Any]:
    answer = await h.http.get("/health", headers={"Authorization": f"Bearer {key}"} if key else {})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    HealthAnswer.model_validate(body)  # the documented shape, which forbids unknown keys
    return body


async def test_a_receiver_that_does_not_resolve_is_reported_but_the_service_stays_healthy(h: Harness) -> None:
    [instance_id] = await ready(h, {"webhookUrl": NOWHERE})
    await run_dispatcher(h, 600)  # ten minutes of retries: over the old five-minute threshold

    body = await health(h)
    webhooks = body["services"]["webhooks"]
    assert body["status"] == "healthy", webhooks
    assert webhooks["status"] == "up" and "reason" not in webhooks
    assert webhooks["pending"] == 5 and webhooks["oldestPendingSeconds"] > 600
    assert webhooks["oldestDueSeconds"] < 120  # every due delivery is being attempted
    assert (webhooks["failingReceivers"], webhooks["unreachableReceivers"]) == (1, 1)
    [receiver] = webhooks["receivers"]
    assert receiver["receiver"] == "http://no-such-host.invalid"  # no path, no query
    assert (receiver["pending"], receiver["failing"]) == (5, 1)  # the first fails; four wait behind it
    assert receiver["oldestPendingSeconds"] > 600
    assert receiver["lastStatusCode"] is None
    assert receiver["lastError"] == "could not resolve the host name"
    # The same failures are on the instance's own history.
    events = (await h.http.get(f"/api/instances/{instance_id}/events")).json()["events"]
    assert events[0]["webhooks"][0]["lastError"] == "could not resolve the host name"


async def test_due_deliveries_left_unattempted_degrade_the_service_until_they_are_attempted(
    h: Harness, receiver_url: str
) -> None:
    await ready(h, {"webhookUrl": receiver_url})
    await run_dispatcher(h, 0)
    assert (await health(h))["status"] == "healthy"

    # A stop writes two deliveries nobody attempts (the dispatcher stuck) for three minutes.
    [instance] = (await h.http.get("/api/instances")).json()["instances"]
    assert (await h.http.post(f"/api/instances/{instance['instanceId']}/stop")).status_code == 202
    await h.run_until(lambda: _pending(h))
    h.clock.advance(180)
    body = await health(h)
    webhooks = body["services"]["webhooks"]
    assert body["status"] == "degraded"
    assert webhooks["status"] == "degraded" and webhooks["oldestDueSeconds"] >= 180
    assert "the dispatcher is stuck or far behind" in webhooks["reason"]
    assert webhooks["failingReceivers"] == 0  # nothing failed: nothing was tried

    await run_dispatcher(h, 0)
    body = await health(h)
    assert body["status"] == "healthy" and body["services"]["webhooks"]["pending"] == 0


async def _pending(h: Harness) -> bool:
    return (await h.services.dispatcher.backlog())[0] > 0


async def test_most_receivers_unreachable_degrades_the_service(h: Harness, receiver_url: str) -> None:
    """Three receivers unreachable and nothing else sent to: more likely this service's DNS or network."""
    hosts = [f"http://no-such-host-{n}.invalid/hook" for n in range(3)]
    await ready(h, *({"webhookUrl": url} for url in hosts))
    await run_dispatcher(h, 60)
    webhooks = (await health(h))["services"]["webhooks"]
    assert webhooks["status"] == "degraded" and webhooks["unreachableReceivers"] == 3
    assert "3 of the 3 receivers sent to cannot be reached" in webhooks["reason"]
    assert sorted(r["receiver"] for r in webhooks["receivers"]) == [url.removesuffix("/hook") for url in hosts]

    # A receiver that answers shows the service reaches the network: three dead ones are their owners'.
    await ready(h, {"webhookUrl": receiver_url})
    await run_dispatcher(h, 0)
    body = await health(h)
    assert body["status"] == "healthy", body["services"]["webhooks"]
    assert body["services"]["webhooks"]["unreachableReceivers"] == 3


async def test_only_an_administrator_sees_which_receivers_fail(tmp_path: Path) -> None:
    """/health answers without a key; the receivers of every key are named to an admin key only."""
    harness = await Harness(tmp_path, api_keys=USER_KEY, admin_api_keys=ADMIN_KEY).start()
    try:
        await ready(harness, {"webhookUrl": NOWHERE}, headers={"Authorization": f"Bearer {USER_KEY}"})
        await run_dispatcher(harness, 60)
        for key in (None, USER_KEY, "not-a-key"):
            webhooks = (await health(harness, key))["services"]["webhooks"]
            assert webhooks["failingReceivers"] == 1 and "receivers" not in webhooks, key
        webhooks = (await health(harness, ADMIN_KEY))["services"]["webhooks"]
        assert [r["receiver"] for r in webhooks["receivers"]] == ["http://no-such-host.invalid"]
    finally:
        await harness.stop()
