"""Nothing stuck: every non-final status ends by a deadline, refused actions back off, and one slow
upstream call delays only its own row."""

from __future__ import annotations

from pathlib import Path

from tests.harness import Harness


async def health(harness: Harness) -> dict[str, object]:
    answer = await harness.http.get("/health")
    assert answer.status_code == 200, answer.text
    checks: dict[str, object] = answer.json()["services"]["instances"]
    return {"status": answer.json()["status"], **checks}


async def test_a_stop_during_an_endless_image_pull_ends_by_deleting_it(tmp_path: Path) -> None:
    async with Harness(tmp_path, action_timeout_seconds=300) as harness:
        harness.faults(stuck_in_pulling=True)
        created = await harness.create()
        instance_id = created["instanceId"]
        pulling = await harness.until_status(instance_id, "starting", max_seconds=120)
        assert pulling["upstreamStatus"] == "pulling"
        harness.clock.advance(3)
        assert (await harness.http.post(f"/api/instances/{instance_id}/stop")).status_code == 202
        before = harness.stats().get("POST /gpu/instance/stop", 0)

        ended = await harness.until_status(instance_id, "terminated", "stopped", "failed", max_seconds=600)

        assert ended["status"] == "terminated" and ended["statusReason"] == "STOP_TIMEOUT"
        assert "never finished booting" in (await harness.events(instance_id))[-2]["message"]
        refused = harness.stats().get("POST /gpu/instance/stop", 0) - before
        assert 1 <= refused <= 40, refused  # backing off; at one a second it was ~300 in these 300 s
        name = await harness.upstream_name(instance_id)
        assert [i for i in harness.live_upstream() if i["name"] == name and i["visible"]] == []


async def test_health_reports_rows_past_their_deadline(tmp_path: Path) -> None:
    async with Harness(tmp_path, action_timeout_seconds=120) as harness:
        harness.faults(stuck_in_pulling=True)
        created = await harness.create()
        await harness.until_status(created["instanceId"], "starting", max_seconds=120)
        assert (await health(harness))["pastDeadline"] == 0
        await harness.http.post(f"/api/instances/{created['instanceId']}/stop")
        harness.clock.advance(120 + 61)  # the reconciler did not run: the stop is past its deadline
        report = await health(harness)
        assert report["pastDeadline"] == 1 and report["status"] == "degraded"
        await harness.tick(2)  # it runs: the stop becomes a delete with a fresh deadline
        assert (await health(harness))["pastDeadline"] == 0


async def test_one_slow_create_does_not_hold_up_other_instances(tmp_path: Path) -> None:
    async with Harness(tmp_path, novita_timeout_seconds=2.0) as harness:
        steady = await harness.create()
        await harness.until_status(steady["instanceId"], "ready")
        harness.faults(create_delay_seconds=60)
        slow = await harness.create()
        await harness.tick()  # its create goes out and hangs (for up to 2 real seconds here)
        harness.faults(create_delay_seconds=0)
        beside = await harness.create()
        assert (await harness.http.post(f"/api/instances/{steady['instanceId']}/stop")).status_code == 202
        stops = harness.stats().get("POST /gpu/instance/stop", 0)

        await harness.tick()  # returns within half a second although the slow create still hangs

        assert harness.services.reconciler.busy_rows() == {slow["instanceId"]}
        assert harness.stats().get("POST /gpu/instance/stop", 0) == stops + 1
        assert (await harness.instance(beside["instanceId"]))["novitaInstanceId"] is not None
        ready = await harness.until_status(beside["instanceId"], "ready", "failed", max_seconds=60)
        assert ready["status"] == "ready"
        late = await harness.until_status(slow["instanceId"], "ready", "failed", max_seconds=300)
        assert late["status"] == "ready"
        assert harness.stats().get("POST /gpu/instance/create", 0) == 3


async def test_a_stop_carried_out_while_nobody_looked_ends_stopped_not_failed(tmp_path: Path) -> None:
    """After a crash the row may be looked at again only once its deadline passed (its lease had to lapse):
    Novita has stopped it meanwhile, so it is stopped, not STOP_TIMEOUT (found by the chaos bench)."""
    async with Harness(tmp_path, action_timeout_seconds=60) as harness:
        created = await harness.create()
        ready = await harness.until_status(created["instanceId"], "ready")
        assert (await harness.http.post(f"/api/instances/{created['instanceId']}/stop")).status_code == 202
        harness.novita_action("stop", ready["novitaInstanceId"])  # the stop a killed process had sent
        harness.clock.advance(120)
        ended = await harness.until_status(created["instanceId"], "stopped", "failed", max_seconds=30)
        assert ended["status"] == "stopped", ended


async def test_a_stop_that_times_out_and_later_succeeds_ends_stopped(tmp_path: Path) -> None:
    # Each refused stop gives up at once (no real-time retries), so the test's pace is the clock's alone.
    async with Harness(tmp_path, action_timeout_seconds=60, novita_retry_deadline_seconds=0) as harness:
        created = await harness.create()
        await harness.until_status(created["instanceId"], "ready")
        harness.faults(server_error_rate=1.0, paths=["/gpu/instance/stop"])
        assert (await harness.http.post(f"/api/instances/{created['instanceId']}/stop")).status_code == 202
        failed = await harness.until_status(created["instanceId"], "failed", max_seconds=120)
        assert failed["statusReason"] == "STOP_TIMEOUT"
        assert (await health(harness))["failedActionsRetrying"] == 1
        harness.faults(server_error_rate=0.0, paths=[])
        stopped = await harness.until_status(created["instanceId"], "stopped", max_seconds=300)
        assert stopped["statusReason"] == "USER"
        assert (await health(harness))["failedActionsRetrying"] == 0
