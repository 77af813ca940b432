"""Every action a worker takes on its own is one row, actor system:<worker>, in the instance's team: an
auto-stop's stop or delete, a budget's crossing and its stopAll, a spot recovery's begin and end (however
it ends). Each row is written in the transaction of the action it records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Harness
from tests.integration.audit.trail import OWNER, call, create, events, key, team
from tests.integration.instances.test_spot_recovery import ready_spot, reclaim, recovered

pytestmark = pytest.mark.asyncio
HOUR = 3600.0


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness(tmp_path, admin_api_keys=OWNER) as h:
        await team(h, "ml")
        yield h


async def ready(h: Harness, secret: str, name: str, **body: Any) -> str:
    made = await create(h, secret, name, **body)
    assert made.status_code == 201, made.text
    instance_id: str = made.json()["instanceId"]

    async def done() -> bool:
        view = await call(h, secret, "GET", f"/api/instances/{instance_id}")
        return bool(view.json()["status"] == "ready")

    await h.run_until(done)
    return instance_id


async def test_an_auto_stop_leaves_a_system_auto_stop_row_for_each_stop_and_delete(keyed: Harness) -> None:
    h = keyed
    alice = await key(h, "ml", "member", "alice")
    stops = await ready(h, alice["secret"], "idle-stop", autoStop={"idleMinutes": 10})
    deletes = await ready(h, alice["secret"], "idle-delete", autoStop={"idleMinutes": 10, "action": "delete"})
    await h.services.sweeper.step()
    assert await events(h, actor="system:auto-stop") == []  # nothing before a deadline
    h.clock.advance(10 * 60)
    await h.services.sweeper.step()

    rows = {r["target"]: r for r in await events(h, actor="system:auto-stop")}
    assert set(rows) == {stops, deletes}
    assert rows[stops]["action"] == "instance.stop" and rows[deletes]["action"] == "instance.delete"
    ml = (await call(h, OWNER, "GET", "/api/teams/ml")).json()["id"]
    for row in rows.values():
        assert row["outcome"] == "ok" and row["team"] == ml
        assert row["actorName"] is None and row["requestId"] is None
        assert row["details"]["reason"] == "AUTO_STOP" and row["details"]["signal"] == "lastUsed"
    admin = await key(h, "ml", "admin", "ml-admin")  # the team's admin reads them
    assert {r["target"] for r in await events(h, admin["secret"], actor="system:auto-stop")} == {stops, deletes}


async def test_a_budgets_stop_all_leaves_a_row_per_instance_stopped_and_one_for_the_crossing(keyed: Harness) -> None:
    h = keyed
    alice, boss = await key(h, "ml", "member", "alice"), await key(h, "ml", "admin", "boss")
    instance_id = await ready(h, alice["secret"], "spender")
    budget = await call(h, boss["secret"], "PUT", "/api/budget", {"monthlyLimitUsd": 0.01, "onExceeded": "stopAll"})
    assert budget.status_code == 200, budget.text
    h.clock.advance(HOUR)
    await h.services.budgets.step()

    ml = budget.json()["apiKey"]
    [crossed] = await events(h, actor="system:budget", action="budget.exceeded")
    assert crossed["team"] == ml and crossed["target"] == ml and crossed["outcome"] == "ok"
    assert crossed["details"]["onExceeded"] == "stopAll" and crossed["details"]["stoppedInstances"] == 1
    [stop] = await events(h, actor="system:budget", action="instance.stop")
    assert stop["target"] == instance_id and stop["team"] == ml
    assert stop["details"]["reason"] == "BUDGET_EXCEEDED"
    [set_by] = await events(h, action="budget.set")  # and the admin's request that set the budget
    assert set_by["actor"] == boss["id"] and set_by["target"] == ml and set_by["team"] == ml


async def test_a_spot_recovery_leaves_its_begin_and_its_end(harness: Harness) -> None:
    """No keys configured: the one caller is the owner of team default, who reads the whole trail."""
    h = harness
    spot = await ready_spot(h)
    await recovered(h, spot["instanceId"], spot["novitaInstanceId"])
    rows = await events(h, None, actor="system:spot-recovery", target=spot["instanceId"])
    assert [(r["action"], r["outcome"]) for r in rows] == [("recovery.end", "ok"), ("recovery.begin", "ok")]
    end, begin = rows
    assert begin["details"]["path"] == "migrate" and begin["details"]["attempt"] == 1
    assert end["details"]["outcome"] == "recovered" and end["details"]["attempt"] == 1
    assert end["details"]["seconds"] > 0 and end["team"] == begin["team"] == "default"

    reclaim(h, spot["novitaInstanceId"])  # again; this time a stop ends the recovery

    async def recovering() -> bool:
        return bool((await h.instance(spot["instanceId"]))["status"] == "recovering")

    await h.run_until(recovering, max_seconds=120)
    assert (await h.http.post(f"/api/instances/{spot['instanceId']}/stop")).status_code == 202
    rows = await events(h, None, target=spot["instanceId"])
    assert [(r["actor"], r["action"], r["outcome"]) for r in rows[:3]] == [
        ("default", "instance.stop", "ok"),  # the request, after the row its transaction wrote
        ("system:spot-recovery", "recovery.end", "RECOVERY_ABANDONED"),
        ("system:spot-recovery", "recovery.begin", "ok"),
    ]
    assert rows[1]["details"]["attempt"] == 2
