"""The instance status machine, driven by advancing the clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.emulator.conftest import Emulator


def walk(emu: Emulator, instance_id: str, steps: list[tuple[float, str]]) -> None:
    """Advance by each delay and check the status seen through the API."""
    for delay, expected in steps:
        emu.advance(delay)
        assert emu.status(instance_id) == expected, f"after +{delay}s"


def test_create_goes_through_tocreate_creating_pulling_running(emu: Emulator) -> None:
    instance_id = emu.create()
    assert len(instance_id) == 16 and int(instance_id, 16) >= 0
    assert emu.status(instance_id) == "toCreate"
    walk(emu, instance_id, [(0.99, "toCreate"), (0.01, "creating"), (2, "pulling"), (6.9, "pulling"), (0.1, "running")])


def test_stop_start_restart_delete(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.advance(10)

    stopped = emu.action("stop", instance_id)
    assert stopped.status_code == 200
    assert stopped.json() == {"instanceId": instance_id, "state": "toStop"}
    walk(emu, instance_id, [(1, "stopping"), (2, "exited")])
    assert emu.get(instance_id)["lastStoppedAt"] != "0"

    assert emu.action("start", instance_id).json()["state"] == "toStart"
    walk(emu, instance_id, [(1, "starting"), (4, "running")])

    assert emu.action("restart", instance_id).json()["state"] == "toRestart"
    walk(emu, instance_id, [(1, "restarting"), (3, "running")])

    assert emu.action("delete", instance_id).json()["state"] == "toRemove"
    walk(emu, instance_id, [(1, "removing"), (1, "removed")])


@pytest.mark.parametrize("status_at", [0, 5, 10])  # toCreate, pulling, running
def test_start_unless_exited_is_an_invalid_state_change(emu: Emulator, status_at: float) -> None:
    instance_id = emu.create()
    emu.advance(status_at)
    response = emu.action("start", instance_id)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "reason": "CONFLICT", "message": "invalid state change", "metadata": {}}


def test_stop_and_restart_need_running(emu: Emulator) -> None:
    instance_id = emu.create()
    for action in ("stop", "restart"):
        response = emu.action(action, instance_id)
        assert response.status_code == 400 and response.json()["message"] == "invalid state change"
    emu.advance(10)
    emu.action("stop", instance_id)
    emu.advance(3)
    assert emu.action("stop", instance_id).json()["message"] == "invalid state change"


def test_delete_works_from_any_state_and_is_idempotent(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.advance(4)  # pulling: the scheduled "running" must never happen
    assert emu.action("delete", instance_id).status_code == 200
    assert emu.action("delete", instance_id).json()["state"] == "toRemove"
    walk(emu, instance_id, [(2, "removed"), (20, "removed")])


def test_removed_instances_stay_listed_then_are_not_found(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.action("delete", instance_id)
    emu.advance(2 + 59)
    assert emu.api.get("/gpu/instances").json()["total"] == 1
    emu.advance(1)
    assert emu.api.get("/gpu/instances").json() == {"instances": [], "total": 0}
    response = emu.api.get("/gpu/instance", params={"instanceId": instance_id})
    assert response.status_code == 400
    assert response.json()["reason"] == "RESOURCE_NOT_FOUND"
    assert emu.action("delete", instance_id).json()["reason"] == "RESOURCE_NOT_FOUND"


def test_speed_divides_every_duration(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(speed=10, removed_visible_seconds=60)
    instance_id = emu.create()
    walk(emu, instance_id, [(0.1, "creating"), (0.2, "pulling"), (0.7, "running")])
    emu.action("delete", instance_id)
    emu.advance(0.2 + 5.9)
    assert emu.api.get("/gpu/instances").json()["total"] == 1
    emu.advance(0.1)
    assert emu.api.get("/gpu/instances").json()["total"] == 0


def test_timings_are_configurable(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(timings={"to_create": 0, "creating": 0, "pulling": 30})
    instance_id = emu.create()
    walk(emu, instance_id, [(0, "pulling"), (29, "pulling"), (1, "running")])


def test_control_api_records_the_true_timeline(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.advance(20)
    emu.action("stop", instance_id)
    emu.advance(5)
    [truth] = emu.http.get("/_emulator/instances").json()["instances"]
    created = truth["createdAt"]
    assert truth["id"] == instance_id and truth["status"] == "exited"
    assert truth["runningAt"] == created + 10
    assert truth["appBootedAt"] == created + 14
    assert truth["stoppedAt"] == created + 23
    assert [(h["status"], h["at"] - created) for h in truth["history"]] == [
        ("toCreate", 0),
        ("creating", 1),
        ("pulling", 3),
        ("running", 10),
        ("toStop", 20),
        ("stopping", 21),
        ("exited", 23),
    ]
    assert emu.http.get(f"/_emulator/instances/{instance_id}").json()["id"] == instance_id


def test_stop_before_app_boot_means_the_app_never_booted(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.advance(11)
    emu.action("stop", instance_id)
    emu.advance(10)
    truth = emu.http.get(f"/_emulator/instances/{instance_id}").json()
    assert truth["appBootedAt"] is None and truth["appUp"] is False
