"""One record, at most one billed instance, whatever Novita's timing.

The emulator holds each create for `create_delay_seconds` of emulated time and completes it even after
the service has hung up (its timeout here is a fraction of a real second), as a slow Novita can. A stop
or a delete may arrive at any point of that window; whatever happens, every upstream instance carrying
a record's name must end up the one that record wants, and no other may keep running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Harness

FINAL = ("ready", "stopped", "terminated", "failed")


@pytest.fixture
async def slow(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness(tmp_path, novita_timeout_seconds=0.2) as h:
        yield h


def live_named(harness: Harness, name: str) -> list[dict[str, Any]]:
    """Upstream instances of this name that exist now and are not on their way out."""
    return [
        i
        for i in harness.upstream_instances()
        if i["name"] == name and i["visible"] and i["status"] not in ("toRemove", "removing", "removed")
    ]


async def settle(harness: Harness, ids: list[str], *, max_seconds: float) -> list[dict[str, Any]]:
    async def all_final() -> bool:
        return all([(await harness.instance(i))["status"] in FINAL for i in ids])

    await harness.run_until(all_final, max_seconds=max_seconds, step=1.0)
    return [await harness.instance(i) for i in ids]


async def assert_owned(harness: Harness, views: list[dict[str, Any]]) -> None:
    """Each record holds exactly what it wants upstream, and nothing of its name runs otherwise."""
    for view in views:
        live = live_named(harness, await harness.upstream_name(view["instanceId"]))
        if view["status"] == "ready":
            assert [i["id"] for i in live] == [view["novitaInstanceId"]]
            assert live[0]["status"] == "running"
        elif view["status"] == "stopped":
            assert all(i["status"] == "exited" for i in live), live
            assert len(live) <= 1 and (not live or live[0]["id"] == view["novitaInstanceId"])
        else:  # terminated, or failed without an instance
            assert live == [], (view["status"], live)


@pytest.mark.parametrize("delay", [25, 120, 600])
async def test_a_slow_create_makes_one_instance_and_stop_and_delete_still_hold(slow: Harness, delay: int) -> None:
    slow.faults(create_delay_seconds=delay)
    ids = [(await slow.create())["instanceId"] for _ in range(3)]
    await slow.tick()  # the three creates go out and time out unanswered
    slow.clock.advance(2)
    assert (await slow.http.post(f"/api/instances/{ids[1]}/stop")).status_code == 202
    assert (await slow.http.delete(f"/api/instances/{ids[2]}")).status_code == 202
    views = await settle(slow, ids, max_seconds=delay + 900)
    assert [v["status"] for v in views] == ["ready", "stopped", "terminated"]
    await assert_owned(slow, views)
    assert slow.stats().get("POST /gpu/instance/create", 0) == 3


@pytest.mark.parametrize("action_at", [0, 5, 24, 26, 40, 200])
@pytest.mark.parametrize("action", ["stop", "delete"])
async def test_stop_or_delete_at_any_point_of_a_slow_create(slow: Harness, action: str, action_at: int) -> None:
    slow.faults(create_delay_seconds=25)
    created = await slow.create()
    instance_id = created["instanceId"]
    waited = 0
    while waited < action_at:
        await slow.tick()
        slow.clock.advance(1)
        waited += 1
    if action == "stop":
        answer = await slow.http.post(f"/api/instances/{instance_id}/stop")
    else:
        answer = await slow.http.delete(f"/api/instances/{instance_id}")
    assert answer.status_code in (200, 202), answer.text
    (view,) = await settle(slow, [instance_id], max_seconds=1200)
    assert view["status"] == ("stopped" if action == "stop" else "terminated")
    slow.clock.advance(60)  # a create that completes after the record settled is still cleaned up
    await slow.tick(3)
    await assert_owned(slow, [view])
    assert slow.stats().get("POST /gpu/instance/create", 0) <= 1


async def test_a_create_never_answered_is_not_sent_again_and_fails_at_its_deadline(tmp_path: Path) -> None:
    async with Harness(tmp_path, novita_timeout_seconds=0.2, startup_timeout_seconds=300) as harness:
        harness.faults(create_delay_seconds=3600)  # completes an hour later, long after the record gave up
        created = await harness.create()
        (view,) = await settle(harness, [created["instanceId"]], max_seconds=400)
        assert view["status"] == "failed" and view["statusReason"] == "STARTUP_TIMEOUT"
        assert "not sent again" in view["statusMessage"]
        assert harness.stats().get("POST /gpu/instance/create", 0) == 1
        harness.clock.advance(3600)
        await harness.tick(2)
        await assert_owned(harness, [view])


async def test_an_instance_its_record_no_longer_wants_is_deleted_however_late(harness: Harness) -> None:
    """A record that ended without an instance owns its name: whatever appears under it is removed."""
    created = await harness.create()
    await harness.http.delete(f"/api/instances/{created['instanceId']}")  # before any create was sent
    name = await harness.upstream_name(created["instanceId"])
    harness.novita_create(name)  # an instance under its name, after the record ended
    harness.clock.advance(60)
    await harness.services.reconciler.tick(full=True)
    assert live_named(harness, name) == []


async def test_a_duplicate_of_a_ready_instance_is_deleted_and_the_record_keeps_its_own(harness: Harness) -> None:
    created = await harness.create()
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    name = await harness.upstream_name(created["instanceId"])
    product = harness.upstream_instances()[0]["productId"]
    harness.novita_create(name, product_id=product)  # a second instance under the same name
    await harness.tick()
    assert [i["id"] for i in live_named(harness, name)] == [ready["novitaInstanceId"]]
    assert (await harness.instance(created["instanceId"]))["status"] == "ready"


async def test_instances_of_other_names_are_left_alone(harness: Harness) -> None:
    product = (await harness.http.get("/api/products")).json()["products"][0]["offers"][0]["productId"]
    harness.novita_create("someone-elses", product_id=product)
    created = await harness.create()
    await harness.until_status(created["instanceId"], "ready", "failed")
    await harness.services.reconciler.tick(full=True)
    assert len(live_named(harness, "someone-elses")) == 1
