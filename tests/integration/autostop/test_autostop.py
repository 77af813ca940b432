"""Auto-stop: idle instances are stopped at their deadline (never before), through the normal stop path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from novita_gpu.autostop import sweeper as sweeper_module
from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator.config import Timings
from novita_gpu.kit.tables import Instance
from tests.harness import Harness


async def ready(harness: Harness, **body: object) -> dict[str, object]:
    created = await harness.create(**body)
    return await harness.until_status(created["instanceId"], "ready")


def minutes(n: float) -> float:
    return n * 60


async def test_idle_instance_is_stopped_at_its_deadline_and_not_before(harness: Harness) -> None:
    inst = await ready(harness, autoStopMinutes=10)
    sweeper = harness.services.sweeper
    harness.clock.advance(minutes(10) - 1)
    assert (await sweeper.sweep(dry_run=False))["stopped"] == []
    assert (await harness.instance(str(inst["instanceId"])))["status"] == "ready"
    harness.clock.advance(1)
    result = await sweeper.sweep(dry_run=False)
    assert [s["instanceId"] for s in result["stopped"]] == [inst["instanceId"]]
    stopped = await harness.until_status(str(inst["instanceId"]), "stopped")
    assert stopped["statusReason"] == "AUTO_STOP"
    reasons = [(e["to"], e["reason"]) for e in await harness.events(str(inst["instanceId"]))]
    assert ("stopping", "AUTO_STOP") in reasons and ("stopped", "AUTO_STOP") in reasons
    assert harness.live_upstream()[0]["status"] == "exited"


async def test_the_sweeper_wakes_at_the_earliest_deadline_within_one_interval(tmp_path: Path) -> None:
    async with Harness(tmp_path, auto_stop_check_seconds=60) as harness:
        await ready(harness, autoStopMinutes=5)
        sweeper = harness.services.sweeper
        assert await sweeper.seconds_until_next_sweep() == 60  # deadline is 5 minutes away
        harness.clock.advance(minutes(5) - 20)
        assert 19.9 <= await sweeper.seconds_until_next_sweep() <= 20.0
        harness.clock.advance(20)
        assert await sweeper.seconds_until_next_sweep() <= 0.05


async def test_last_used_resets_the_idle_clock(harness: Harness) -> None:
    inst = await ready(harness, autoStopMinutes=10)
    harness.clock.advance(minutes(9))
    await harness.http.put(f"/api/instances/{inst['instanceId']}/last-used")
    harness.clock.advance(minutes(9))
    assert (await harness.services.sweeper.sweep(dry_run=False))["stopped"] == []
    harness.clock.advance(minutes(1))
    assert len((await harness.services.sweeper.sweep(dry_run=False))["stopped"]) == 1


async def test_starting_instances_and_zero_minutes_are_never_stopped(harness: Harness) -> None:
    never = await ready(harness, autoStopMinutes=0)
    harness.faults(stuck_in_pulling=True)
    starting = await harness.create(autoStopMinutes=1)
    await harness.until_status(starting["instanceId"], "starting")
    harness.clock.advance(minutes(120))
    result = await harness.services.sweeper.sweep(dry_run=False)
    assert result["stopped"] == []
    assert (await harness.instance(str(never["instanceId"])))["status"] == "ready"
    assert (await harness.instance(starting["instanceId"]))["status"] == "starting"


async def test_trigger_is_a_dry_run_by_default(harness: Harness) -> None:
    inst = await ready(harness, autoStopMinutes=1)
    harness.clock.advance(minutes(2))
    response = await harness.http.post("/api/instances/auto-stop/trigger")
    assert response.status_code == 200
    body = response.json()
    assert body["dryRun"] is True and [w["instanceId"] for w in body["wouldStop"]] == [inst["instanceId"]]
    assert (await harness.instance(str(inst["instanceId"])))["status"] == "ready"
    response = await harness.http.post("/api/instances/auto-stop/trigger", json={"dryRun": False})
    assert [w["instanceId"] for w in response.json()["stopped"]] == [inst["instanceId"]]
    assert (await harness.instance(str(inst["instanceId"])))["status"] == "stopping"


async def test_stats_report_live_figures_and_savings(harness: Harness) -> None:
    inst = await ready(harness, autoStopMinutes=10)
    stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
    assert stats["enabled"] is True and stats["watched"] == 1 and stats["eligibleNow"] == 0
    assert stats["nextDeadline"]["instanceId"] == inst["instanceId"]
    harness.clock.advance(minutes(10))
    assert (await harness.http.get("/api/instances/auto-stop/stats")).json()["eligibleNow"] == 1
    await harness.services.sweeper.sweep(dry_run=False)
    await harness.until_status(str(inst["instanceId"]), "stopped")
    harness.clock.advance(3600)
    stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
    assert stats["stoppedSoFar"] == 1 and stats["watched"] == 0
    assert 0.99 <= stats["gpuHoursSaved"] <= 1.01
    assert stats["dollarsSaved"] > 0
    assert stats["lastRunAt"] is not None


async def test_instances_not_created_by_the_service_are_never_touched(harness: Harness) -> None:
    outsider = harness.novita_create("outsider", product_id="4090.16c62g", image_url="ubuntu:22.04")
    await ready(harness, autoStopMinutes=1)
    harness.clock.advance(minutes(600))
    await harness.services.sweeper.sweep(dry_run=False)
    await harness.tick(5)
    statuses = {i["id"]: i["status"] for i in harness.upstream_instances()}
    assert statuses[outsider] == "running"


async def never_answering(tmp_path: Path) -> Harness:
    """A service whose instances run but whose app never boots: each ends in HEALTH_CHECK_TIMEOUT."""
    emulator = EmulatorConfig(timings=Timings(app_boot_after_create=10**6))
    return await Harness(tmp_path, emulator=emulator, health_check_timeout_seconds=60).start()


async def test_a_failed_instance_novita_still_runs_is_stopped_when_idle(tmp_path: Path) -> None:
    harness = await never_answering(tmp_path)
    try:
        created = await harness.create(autoStopMinutes=10)
        failed = await harness.until_status(created["instanceId"], "failed", max_seconds=300)
        assert failed["statusReason"] == "HEALTH_CHECK_TIMEOUT" and failed["upstreamStatus"] == "running"
        assert failed["failedAt"] is not None
        deadline = datetime.fromisoformat(failed["failedAt"]) + timedelta(minutes=10)
        assert datetime.fromisoformat(failed["autoStop"]["stopsAt"]) == deadline

        sweeper = harness.services.sweeper
        harness.clock.advance((deadline - harness.clock.now()).total_seconds() - 1)
        assert (await sweeper.sweep(dry_run=False))["stopped"] == []
        harness.clock.advance(1)
        [stopped] = (await sweeper.sweep(dry_run=False))["stopped"]
        assert stopped["instanceId"] == created["instanceId"] and stopped["status"] == "failed"
        assert stopped["idleSince"] == failed["failedAt"]
        after = await harness.until_status(created["instanceId"], "stopped")
        assert after["statusReason"] == "AUTO_STOP"
        assert [i["status"] for i in harness.live_upstream()] == ["exited"]
    finally:
        await harness.stop()


async def test_marking_a_failed_instance_used_defers_its_stop(tmp_path: Path) -> None:
    harness = await never_answering(tmp_path)
    try:
        created = await harness.create(autoStopMinutes=10)
        await harness.until_status(created["instanceId"], "failed", max_seconds=300)
        harness.clock.advance(minutes(9))
        touched = await harness.http.put(f"/api/instances/{created['instanceId']}/last-used")
        assert touched.status_code == 200
        harness.clock.advance(minutes(9))
        assert (await harness.services.sweeper.sweep(dry_run=False))["stopped"] == []
        stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
        assert stats["watched"] == 1 and stats["nextDeadline"]["instanceId"] == created["instanceId"]
        harness.clock.advance(minutes(1))
        assert len((await harness.services.sweeper.sweep(dry_run=False))["stopped"]) == 1
    finally:
        await harness.stop()


async def test_an_instance_that_failed_while_novita_still_boots_it_is_deleted_when_idle(tmp_path: Path) -> None:
    """Novita bills from the image pull on and cannot stop a booting instance: once idle it is deleted."""
    async with Harness(tmp_path, startup_timeout_seconds=60) as harness:
        harness.faults(stuck_in_pulling=True)
        created = await harness.create(autoStopMinutes=5)
        never = await harness.create(autoStopMinutes=0)
        failed = await harness.until_status(created["instanceId"], "failed", max_seconds=300)
        assert failed["statusReason"] == "STARTUP_TIMEOUT" and failed["upstreamStatus"] == "pulling"
        assert failed["autoStop"]["action"] == "delete"
        deadline = datetime.fromisoformat(failed["failedAt"]) + timedelta(minutes=5)
        assert datetime.fromisoformat(failed["autoStop"]["stopsAt"]) == deadline

        harness.clock.advance((deadline - harness.clock.now()).total_seconds() - 1)
        assert (await harness.services.sweeper.sweep(dry_run=False))["stopped"] == []
        harness.clock.advance(1)
        [ended] = (await harness.services.sweeper.sweep(dry_run=False))["stopped"]
        assert ended["instanceId"] == created["instanceId"] and ended["action"] == "delete"
        gone = await harness.until_status(created["instanceId"], "terminated")
        assert gone["statusReason"] == "AUTO_STOP"
        live = {i["id"]: i["status"] for i in harness.live_upstream()}
        assert gone["novitaInstanceId"] not in live
        assert (await harness.instance(never["instanceId"]))["status"] == "failed"  # 0 minutes: never

        stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
        assert stats["stoppedSoFar"] == 1
        metrics = (await harness.http.get("/api/metrics")).json()
        assert metrics["autoStop"]["deleted"] == 1


async def test_the_sweeper_reads_its_watched_rows_a_chunk_at_a_time(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 10,000 ready instances one read of them all held ~75 MB and the event loop: chunks of WATCH_CHUNK."""
    monkeypatch.setattr(sweeper_module, "WATCH_CHUNK", 2)
    ids = [str((await ready(harness, autoStopMinutes=10 + n))["instanceId"]) for n in range(5)]
    sweeper = harness.services.sweeper
    stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
    assert (stats["watched"], stats["nextDeadline"]["instanceId"]) == (5, ids[0])
    assert await sweeper.seconds_until_next_sweep() == 60
    # A step with nothing due reads the rows once, and sleeps until the earliest deadline or the interval.
    reads = 0
    watched = sweeper._watched

    def counted(owner: str | None = None) -> AsyncIterator[Instance]:
        nonlocal reads
        reads += 1
        return watched(owner)

    monkeypatch.setattr(sweeper, "_watched", counted)
    assert await sweeper.step() == 60 and reads == 1
    harness.clock.advance(minutes(15))
    stopped = (await sweeper.sweep(dry_run=False))["stopped"]
    assert sorted(s["instanceId"] for s in stopped) == sorted(ids)
