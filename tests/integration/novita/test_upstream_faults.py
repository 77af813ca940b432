"""Upstream faults end in the documented statuses and errors, and never in a duplicate instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator.config import Timings
from tests.harness import Harness


def cluster_id(harness: Harness, name: str) -> str:
    clusters = harness.emulator.get("/gpu-instance/openapi/v1/clusters", headers={"Authorization": "Bearer k"}).json()[
        "data"
    ]
    return next(c["id"] for c in clusters if c["name"] == name)


@pytest.mark.parametrize(
    "faults",
    [{"rate_limit_rate": 0.6, "retry_after_seconds": 0}, {"server_error_rate": 0.4, "latency_ms": 20}],
    ids=["rate-limit-storm", "server-errors-and-latency"],
)
async def test_a_fault_storm_still_reaches_ready_once(harness: Harness, faults: dict[str, float]) -> None:
    harness.faults(**faults)
    created = await harness.create()
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["status"] == "ready"
    assert len(harness.upstream_instances()) == 1


async def test_ambiguous_create_is_looked_up_by_name_not_repeated(harness: Harness) -> None:
    harness.faults(create_failures=1, create_failure_mode="after")
    created = await harness.create()
    await harness.tick()
    assert len(harness.upstream_instances()) == 1  # it was created although Novita answered 500
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["status"] == "ready"
    assert len(harness.upstream_instances()) == 1
    assert ready["novitaInstanceId"] == harness.upstream_instances()[0]["id"]


async def test_failed_create_that_never_happened_is_retried(harness: Harness) -> None:
    harness.faults(create_failures=1, create_failure_mode="before")
    created = await harness.create()
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["status"] == "ready"
    assert len(harness.upstream_instances()) == 1


async def test_sold_out_region_falls_back_to_the_next_cheapest(harness: Harness) -> None:
    cheapest = (await harness.http.get("/api/products", params={"productName": "RTX 4090 24GB"})).json()
    offers = [o for o in cheapest["products"][0]["offers"] if o["available"]]
    harness.capacity(offers[0]["clusterId"], offers[0]["productId"], 0)
    created = await harness.create()
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["status"] == "ready"
    assert ready["region"] == offers[1]["region"]
    assert ready["pricePerHour"] == pytest.approx(offers[1]["pricePerHour"])
    assert len(harness.upstream_instances()) == 1


async def test_preferred_region_is_tried_first(harness: Harness) -> None:
    created = await harness.create(region="US-CA-06")
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["region"] == "US-CA-06"


async def test_no_capacity_anywhere_waits_then_fails(tmp_path: Path) -> None:
    async with Harness(tmp_path, capacity_wait_seconds=120) as harness:
        products = (await harness.http.get("/api/products", params={"productName": "RTX 4090 24GB"})).json()
        for offer in products["products"][0]["offers"]:
            harness.capacity(offer["clusterId"], offer["productId"], 0)
        created = await harness.create()
        await harness.tick()
        waiting = await harness.instance(created["instanceId"])
        assert waiting["status"] == "creating" and "capacity" in waiting["statusMessage"]
        failed = await harness.until_status(created["instanceId"], "failed", max_seconds=300)
        assert failed["statusReason"] == "NO_CAPACITY"
        assert harness.upstream_instances() == []


async def test_capacity_that_frees_up_while_waiting_is_used(tmp_path: Path) -> None:
    async with Harness(tmp_path, capacity_wait_seconds=600) as harness:
        offers = (await harness.http.get("/api/products", params={"productName": "RTX 4090 24GB"})).json()["products"][
            0
        ]["offers"]
        for offer in offers:
            harness.capacity(offer["clusterId"], offer["productId"], 0)
        created = await harness.create()
        await harness.run_until(lambda: _message_has(harness, created["instanceId"], "capacity"), max_seconds=30)
        harness.capacity(offers[-1]["clusterId"], offers[-1]["productId"], 8)
        ready = await harness.until_status(created["instanceId"], "ready", "failed")
        assert ready["status"] == "ready" and ready["region"] == offers[-1]["region"]


async def _message_has(harness: Harness, instance_id: str, text: str) -> bool:
    return text in ((await harness.instance(instance_id))["statusMessage"] or "")


async def test_stuck_in_pulling_ends_in_startup_timeout(tmp_path: Path) -> None:
    async with Harness(tmp_path, startup_timeout_seconds=120) as harness:
        harness.faults(stuck_in_pulling=True)
        created = await harness.create()
        failed = await harness.until_status(created["instanceId"], "failed", "ready", max_seconds=300)
        assert failed["status"] == "failed" and failed["statusReason"] == "STARTUP_TIMEOUT"
        assert failed["upstreamStatus"] == "pulling"
        assert len(harness.upstream_instances()) == 1


async def test_app_that_never_answers_ends_in_health_check_timeout(tmp_path: Path) -> None:
    emulator = EmulatorConfig(timings=Timings(app_boot_after_create=10**6))
    async with Harness(tmp_path, emulator=emulator, health_check_timeout_seconds=60) as harness:
        created = await harness.create()
        checking = await harness.until_status(created["instanceId"], "health_checking")
        assert checking["healthCheck"]["endpoints"][0]["healthy"] is False
        assert "502" in checking["healthCheck"]["endpoints"][0]["error"]
        failed = await harness.until_status(created["instanceId"], "failed", max_seconds=120)
        assert failed["statusReason"] == "HEALTH_CHECK_TIMEOUT"


async def test_tcp_only_template_is_ready_when_running(harness: Harness) -> None:
    created = await harness.create(templateId="ubuntu-ssh")
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["status"] == "ready"
    assert ready["healthCheck"]["endpoints"] == []
    assert all(p["type"] == "tcp" for p in ready["connectionDetails"]["ports"])


async def test_spot_reclaim_is_recorded_as_stopped(harness: Harness) -> None:
    created = await harness.create(billingMode="spot", recovery={"onReclaim": "stop"})
    ready = await harness.until_status(created["instanceId"], "ready")
    response = harness.emulator.post(f"/_emulator/instances/{ready['novitaInstanceId']}/reclaim")
    assert response.status_code == 200, response.text
    stopped = await harness.until_status(created["instanceId"], "stopped", max_seconds=60)
    assert stopped["statusReason"] == "SPOT_RECLAIMED"
    assert "reclaimed" in stopped["statusMessage"]
    # Every event says what happened, and the documented step before `stopped` is shown.
    events = await harness.events(created["instanceId"])
    stopping, last = events[-2:]
    assert (stopping["to"], last["to"]) == ("stopping", "stopped"), events
    for event in (stopping, last):
        assert event["reason"] == "SPOT_RECLAIMED" and "reclaimed this spot instance" in (event["message"] or ""), event
    assert "onReclaim stop" in last["message"]


@pytest.mark.parametrize(
    ("action", "status", "reason"),
    [("delete", "terminated", "UPSTREAM_DELETED"), ("stop", "stopped", "UPSTREAM_STOPPED")],
)
async def test_changes_made_outside_the_service_are_noticed(
    harness: Harness, action: str, status: str, reason: str
) -> None:
    created = await harness.create()
    ready = await harness.until_status(created["instanceId"], "ready")
    harness.novita_action(action, ready["novitaInstanceId"])  # as if done in Novita's console
    changed = await harness.until_status(created["instanceId"], status, max_seconds=300)
    assert changed["statusReason"] == reason


async def test_catalog_outage_at_create_is_a_503_and_writes_nothing(harness: Harness) -> None:
    harness.faults(server_error_rate=1.0)
    response = await harness.http.post(
        "/api/instances", json={"name": "x", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert response.headers["Retry-After"]
    harness.faults(server_error_rate=0.0)
    assert (await harness.http.get("/api/instances")).json()["total"] == 0


async def test_a_tick_leaves_steady_instances_alone_until_novita_shows_a_change(harness: Harness) -> None:
    first, second = await harness.create(name="steady-a"), await harness.create(name="steady-b")
    await harness.until_status(first["instanceId"], "ready")
    ready = await harness.until_status(second["instanceId"], "ready")
    reconciler = harness.services.reconciler
    assert (await reconciler.tick(full=True)).claimed == 2  # the periodic full pass looks at every row

    # Between full passes, nothing new upstream: no row is leased or loaded, whatever their number.
    result = await reconciler.tick()
    assert (result.claimed, result.changed, result.busy) == (0, 0, False)

    harness.novita_action("stop", ready["novitaInstanceId"])  # only this one changes, outside the service
    result = await reconciler.tick()
    assert (result.claimed, result.changed) == (1, 1)
    stopping = await harness.instance(second["instanceId"])
    assert stopping["status"] in ("stopping", "stopped") and stopping["statusReason"] == "UPSTREAM_STOPPED"
    assert (await harness.instance(first["instanceId"]))["status"] == "ready"

    synced = (await harness.http.post("/api/instances/sync")).json()  # a sync asked for is a full pass
    assert synced["claimed"] == 2
