"""Reclaims on demand (`POST /_emulator/reclaim`, a reclaim storm) and Novita's notice before each one,
as the listing shows it; the spot settings of the control API (`/_emulator/spot`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.emulator.conftest import Emulator, create_body, ok_json

NOTICE = 30.0  # the default notice, emulated seconds
RECLAIMING = 2.0


def listed(emu: Emulator) -> dict[str, dict[str, Any]]:
    """Every instance of the listing by id (one page: the tests make fewer than 100)."""
    body = ok_json(emu.api.get("/gpu/instances", params={"pageSize": 100}))
    return {i["id"]: i for i in body["instances"]}


def spot_view(instance: dict[str, Any]) -> tuple[str, str, str]:
    return instance["status"], instance["spotStatus"], instance["spotReclaimTime"]


def reclaim(emu: Emulator, **body: Any) -> list[str]:
    reclaimed: list[str] = ok_json(emu.http.post("/_emulator/reclaim", json=body))["reclaimed"]
    return reclaimed


def running_spot(emu: Emulator, n: int) -> list[str]:
    ids = [emu.create(name=f"spot-{i}", billingMode="spot") for i in range(n)]
    emu.advance(20)  # running, and the app booted
    return ids


def test_reclaim_by_count_takes_the_oldest_running_spot_instances(emu: Emulator) -> None:
    first, second, third = running_spot(emu, 3)
    on_demand = emu.create()
    emu.advance(10)
    assert reclaim(emu, count=2) == [first, second]
    now = int(emu.clock.now().timestamp())
    seen = listed(emu)
    assert spot_view(seen[first]) == spot_view(seen[second]) == ("running", "notified", str(now + 30))
    assert spot_view(seen[third]) == ("running", "running", "0")
    assert spot_view(seen[on_demand]) == ("running", "", "0")
    # Only instances that run as spot and are not already being reclaimed count: one is left.
    assert reclaim(emu, count=5) == [third]
    assert reclaim(emu, count=5) == []
    emu.advance(NOTICE + RECLAIMING)
    assert {spot_view(listed(emu)[i])[:2] for i in (first, second, third)} == {("exited", "terminated")}


def test_reclaim_by_ids_is_all_or_nothing(emu: Emulator) -> None:
    first, second = running_spot(emu, 2)
    on_demand = emu.create()
    emu.advance(10)
    refused = emu.http.post("/_emulator/reclaim", json={"ids": [first, on_demand]})
    assert refused.status_code == 400 and refused.json()["reason"] == "CONFLICT"
    assert on_demand in refused.json()["message"]
    assert spot_view(listed(emu)[first]) == ("running", "running", "0")  # not reclaimed either
    unknown = emu.http.post("/_emulator/reclaim", json={"ids": ["0000000000000000"]})
    assert unknown.status_code == 400 and unknown.json()["reason"] == "RESOURCE_NOT_FOUND"

    assert reclaim(emu, ids=[second, second]) == [second]
    assert listed(emu)[second]["spotStatus"] == "notified"
    history = ok_json(emu.http.get(f"/_emulator/instances/{second}"))["history"]
    assert [h["spotStatus"] for h in history][-1] == "notified"
    again = emu.http.post("/_emulator/reclaim", json={"ids": [second]})
    assert again.status_code == 400  # already being reclaimed


@pytest.mark.parametrize(
    "body",
    [{}, {"count": 1, "ids": []}, {"count": -1}, {"count": "2"}, {"ids": "abc"}, {"ids": [1]}, {"ids": [""]}],
)
def test_reclaim_bodies_are_validated(emu: Emulator, body: dict[str, Any]) -> None:
    response = emu.http.post("/_emulator/reclaim", json=body)
    assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM"


def test_the_notice_shows_in_the_listing_then_the_stop(emu: Emulator) -> None:
    [instance_id] = running_spot(emu, 1)
    reclaim(emu, ids=[instance_id])
    # The instance still runs through the notice: its app is up until the stop.
    assert ok_json(emu.http.get(f"/_emulator/instances/{instance_id}"))["appUp"] is True
    due = str(int(emu.clock.now().timestamp() + NOTICE))
    seen = []
    for delay in (0, NOTICE / 2, NOTICE / 2 - 0.1, 0.1, RECLAIMING):
        emu.advance(delay)
        seen.append(spot_view(listed(emu)[instance_id]))
    assert seen == [
        ("running", "notified", due),
        ("running", "notified", due),
        ("running", "notified", due),
        ("stopping", "reclaiming", due),
        ("exited", "terminated", due),
    ]


def test_no_notice_stops_at_once(emu: Emulator) -> None:
    assert ok_json(emu.http.put("/_emulator/spot", json={"noticeSeconds": 0}))["noticeSeconds"] == 0
    [instance_id] = running_spot(emu, 1)
    reclaim(emu, count=1)
    now = str(int(emu.clock.now().timestamp()))
    assert spot_view(listed(emu)[instance_id]) == ("stopping", "reclaiming", now)
    emu.advance(RECLAIMING)
    assert spot_view(listed(emu)[instance_id]) == ("exited", "terminated", now)


def test_the_notice_is_divided_by_the_speed(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(speed=10)
    instance_id = emu.create(billingMode="spot")
    emu.advance(1)  # running after 10 emulated seconds
    reclaim(emu, ids=[instance_id])
    emu.advance(NOTICE / 10 - 0.01)
    assert listed(emu)[instance_id]["spotStatus"] == "notified"
    emu.advance(0.01)
    assert listed(emu)[instance_id]["spotStatus"] == "reclaiming"


def test_random_reclaims_go_through_the_notice_too(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(faults={"spot_reclaim_per_hour": 3600.0})  # about one reclaim per emulated second
    ids = [emu.create(billingMode="spot") for _ in range(3)]
    emu.advance(10 + 10)  # running, and the reclaims have begun, but none can have stopped yet
    assert {spot_view(listed(emu)[i])[:2] for i in ids} == {("running", "notified")}
    emu.advance(NOTICE + RECLAIMING)
    assert {spot_view(listed(emu)[i])[:2] for i in ids} == {("exited", "terminated")}


def test_spot_settings_are_read_changed_validated_and_reset(emu: Emulator) -> None:
    assert ok_json(emu.http.get("/_emulator/spot")) == {"noticeSeconds": 30.0, "migrateNewId": False, "capacity": {}}
    changed = ok_json(emu.http.put("/_emulator/spot", json={"migrateNewId": True}))
    assert changed == {"noticeSeconds": 30.0, "migrateNewId": True, "capacity": {}}
    sold_out = ok_json(emu.http.put("/_emulator/spot", json={"capacity": {"5": 0}}))
    assert sold_out["capacity"] == {"5": 0}
    for bad in ({"noticeSeconds": -1}, {"unknown": 1}, {"migrateNewId": "perhaps"}, {"capacity": {"5": -1}}):
        response = emu.http.put("/_emulator/spot", json=bad)
        assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM", bad
    assert emu.http.post("/_emulator/reset").status_code == 200
    assert ok_json(emu.http.get("/_emulator/spot")) == {"noticeSeconds": 30.0, "migrateNewId": False, "capacity": {}}


def test_configured_spot_settings_are_the_defaults(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(migrate_new_id=True, timings={"spot_notice": 5})
    assert ok_json(emu.http.get("/_emulator/spot")) == {"noticeSeconds": 5.0, "migrateNewId": True, "capacity": {}}


def test_a_cluster_sold_out_of_spot_still_sells_on_demand(emu: Emulator) -> None:
    """`PUT /_emulator/spot {"capacity": {cluster: gpus}}` caps spot alone (4090.16c62g is in cluster 1)."""
    ok_json(emu.http.put("/_emulator/spot", json={"capacity": {"1": 1}}))
    first = emu.create(name="spot-1", billingMode="spot")
    refused = emu.api.post("/gpu/instance/create", json=create_body(name="spot-2", billingMode="spot"))
    assert refused.status_code == 400 and refused.json()["reason"] == "INSUFFICIENT_RESOURCE", refused.text
    assert emu.create(name="on-demand")  # the cluster's GPUs are still there for on-demand
    emu.advance(20)
    [reclaimed] = reclaim(emu, ids=[first])
    emu.advance(40)  # exited: its spot GPU is free again, and a migrate may take it
    assert emu.api.post("/gpu/instance/migrate", json={"instanceId": reclaimed}).status_code == 200
    ok_json(emu.http.put("/_emulator/spot", json={"capacity": {}}))
    assert emu.create(name="spot-3", billingMode="spot")
