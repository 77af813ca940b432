"""What idle members cost: a ready member's GPU time and a stopped member's kept disk, billed to the pool at
price x time while they wait, in GET /api/pools/{name}, GET /api/costs and the budget; a claim ends the
pool's share and the instance's own cost begins."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from novita_gpu.kit.tables import BillingPeriod, Instance
from tests.harness import Harness
from tests.integration.pools.conftest import claim, make_pool, pool_view, until_members

HOUR = 3600.0
DISK_USD_PER_HOUR = 60 * 0.10 / 730  # the template's 60 GB at STOPPED_DISK_USD_PER_GB_MONTH's default


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_idle_members_cost_their_price_times_the_time_they_waited(harness: Harness) -> None:
    await make_pool(harness, minReady=1, minStopped=1, max=3)
    await until_members(harness, ready=1, stopped=1, total=2)
    listed = (await harness.http.get("/api/instances")).json()["instances"]
    [ready] = [i for i in listed if i["pool"]["state"] == "ready"]
    [stopped] = [i for i in listed if i["pool"]["state"] == "stopped"]
    async with harness.services.db.read() as session:
        disk_since = await session.scalar(select(Instance.disk_since).where(Instance.id == stopped["instanceId"]))
        # The stopped member's boot (its image pulled onto its node) was billed as GPU time: the pool's too.
        [boot] = (
            await session.scalars(select(BillingPeriod).where(BillingPeriod.instance_id == stopped["instanceId"]))
        ).all()
    assert disk_since is not None and boot.pool == stopped["pool"]["poolId"] and boot.kind == "gpu"
    timeline = harness.emulator.get(f"/_emulator/instances/{stopped['novitaInstanceId']}").json()
    billed = [h["at"] for h in timeline["history"] if h["status"] in ("pulling", "exited")]
    boot_seconds = (boot.ended_at - boot.started_at).total_seconds()
    assert boot_seconds == pytest.approx(billed[-1] - billed[0], abs=1.0)  # what Novita billed, to a tick
    warm_up = boot.price_per_hour * boot_seconds / HOUR
    gpu_since = _at(ready["cost"]["billingSince"])

    harness.clock.advance(HOUR)
    await harness.tick()
    now = harness.clock.now()
    view = await pool_view(harness)
    assert view["idleCost"]["readyUsdPerHour"] == pytest.approx(ready["pricePerHour"])
    assert view["idleCost"]["stoppedUsdPerHour"] == pytest.approx(DISK_USD_PER_HOUR, rel=1e-4)
    gpu = ready["pricePerHour"] * (now - gpu_since).total_seconds() / HOUR
    disk = DISK_USD_PER_HOUR * (now - disk_since).total_seconds() / HOUR
    assert view["idleCost"]["monthUsd"] == pytest.approx(gpu + warm_up + disk, rel=1e-4)

    costs = (await harness.http.get("/api/costs")).json()
    [pool] = costs["pools"]
    assert pool["pool"] == "gpus"
    assert pool["idleGpuUsd"] == pytest.approx(gpu + warm_up, rel=1e-4)
    assert pool["idleDiskUsd"] == pytest.approx(disk, rel=1e-4)
    assert pool["idleUsdPerHour"] == pytest.approx(ready["pricePerHour"] + DISK_USD_PER_HOUR, rel=1e-4)
    assert costs["totalUsd"] == pytest.approx(gpu + warm_up + disk, rel=1e-4)  # in the totals, so in budgets too
    budget = (await harness.http.get("/api/budget")).json()
    assert budget["spentUsd"] == pytest.approx(gpu + warm_up + disk, rel=1e-3)

    # A claim ends the pool's share of the ready member: from then on it is the claimer's instance's cost.
    claimed = await claim(harness, name="mine")
    assert claimed["instanceId"] == ready["instanceId"]
    claimed_at = harness.clock.now()
    harness.clock.advance(HOUR)
    await harness.tick()
    after = (await harness.http.get("/api/costs")).json()
    [pool_after] = after["pools"]
    gpu_until_claim = ready["pricePerHour"] * (claimed_at - gpu_since).total_seconds() / HOUR
    assert pool_after["idleGpuUsd"] == pytest.approx(gpu_until_claim + warm_up, rel=1e-4)
    [mine] = [row for row in after["instances"] if row["instanceId"] == ready["instanceId"]]
    assert mine["costUsd"] == pytest.approx(
        ready["pricePerHour"] * (harness.clock.now() - gpu_since).total_seconds() / HOUR, rel=1e-4
    )
