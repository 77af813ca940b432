"""What happens to members over HTTP against the emulator: a start refused for capacity moves the claim on,
a failed member is replaced and never handed out, a claimed instance goes back to its pool, a deleted pool
drains, and a pool without claims for idleMinutes keeps its ready members stopped."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator.config import Timings
from tests.harness import NOVITA_KEY, Harness
from tests.integration.pools.conftest import claim, make_pool, pool_view, until_members


def refuse_starts(harness: Harness, *novita_ids: str, next_starts: int = 0) -> None:
    answer = harness.emulator.put(
        "/_emulator/start-refusals", json={"instanceIds": list(novita_ids), "next": next_starts}
    )
    assert answer.status_code == 200, answer.text


async def idle_novita_ids(harness: Harness, state: str) -> list[str]:
    listed = (await harness.http.get("/api/instances")).json()["instances"]
    return [i["novitaInstanceId"] for i in listed if (i["pool"] or {}).get("state") == state and i["status"] == state]


async def test_a_start_refused_for_capacity_moves_on_to_the_next_stopped_member(harness: Harness) -> None:
    await make_pool(harness, minStopped=2, max=4)
    await until_members(harness, stopped=2, total=2)
    members = set(await idle_novita_ids(harness, "stopped"))
    refuse_starts(harness, next_starts=1)  # the claim's start is refused: its member's node is full

    answer = await claim(harness, name="falls-through")
    assert answer["claim"]["source"] == "stopped"
    refused = answer["novitaInstanceId"]
    ready = await harness.until_status(answer["instanceId"], "ready")
    [other] = members - {refused}
    assert ready["novitaInstanceId"] == other  # the other stopped member's instance, under the same record
    assert "another stopped member" in " ".join(e["message"] or "" for e in await harness.events(answer["instanceId"]))
    # The member whose node was full took the refused instance and is deleted; the pool makes another.
    await until_members(harness, stopped=2, claimed=1, total=3)
    assert refused not in {i["id"] for i in harness.live_upstream()}


async def test_a_start_refused_with_no_other_stopped_member_creates_cold(harness: Harness) -> None:
    await make_pool(harness, minStopped=1, max=3)
    await until_members(harness, stopped=1, total=1)
    [only] = await idle_novita_ids(harness, "stopped")
    refuse_starts(harness, only)

    answer = await claim(harness, name="then-cold")
    ready = await harness.until_status(answer["instanceId"], "ready")
    assert ready["novitaInstanceId"] != only
    assert ready["name"] == "then-cold"

    async def refused_one_gone() -> bool:
        return only not in {i["id"] for i in harness.live_upstream()}

    await harness.run_until(refused_one_gone, max_seconds=120)
    await until_members(harness, stopped=1, claimed=1, total=2)


async def test_a_member_that_fails_its_health_check_is_replaced_never_handed_out(tmp_path: Path) -> None:
    emulator = EmulatorConfig(timings=Timings(app_boot_after_create=10**6))
    async with Harness(tmp_path, emulator=emulator, health_check_timeout_seconds=60) as harness:
        await make_pool(harness, minReady=1, max=2)
        await until_members(harness, warming=1, total=1)
        [first] = (await harness.http.get("/api/instances")).json()["instances"]
        await harness.until_status(first["instanceId"], "failed")
        reason = (await harness.instance(first["instanceId"]))["statusReason"]
        assert reason == "HEALTH_CHECK_TIMEOUT"
        claimed_now = await harness.http.post("/api/pools/gpus/claim", json={"name": "not-the-failed-one"})
        assert claimed_now.json()["instanceId"] != first["instanceId"]  # cold: the failed one is not handed out

        async def replaced() -> bool:
            listed = (await harness.http.get("/api/instances")).json()["instances"]
            others = [i for i in listed if i["instanceId"] != first["instanceId"] and i["pool"]["state"] == "ready"]
            return (await harness.instance(first["instanceId"]))["status"] == "terminated" and bool(others)

        await harness.run_until(replaced, max_seconds=60)
        answer = await claim(harness, name="the-replacement")
        assert answer["claim"]["source"] == "warming"  # the replacement, on its way up
        assert answer["instanceId"] != first["instanceId"]


async def test_a_returned_instance_goes_back_as_a_stopped_member_or_is_deleted_when_full(harness: Harness) -> None:
    await make_pool(harness, minReady=1, max=3)
    await until_members(harness, ready=1, total=1)
    first = await claim(harness, name="first")
    await until_members(harness, ready=1, claimed=1, total=2)

    # The pool has its one ready member: no room, so a return deletes the instance.
    full = await harness.http.post(f"/api/instances/{first['instanceId']}/stop", json={"returnToPool": True})
    assert full.status_code == 202, full.text
    assert "deleted" in full.json()["message"]
    await harness.until_status(first["instanceId"], "terminated")

    # With minStopped raised, a return is kept as a stopped member, named as the pool's again.
    assert (await harness.http.patch("/api/pools/gpus", json={"minStopped": 1})).status_code == 200
    second = await claim(harness, name="second")
    assert second["claim"]["source"] == "ready"
    back = await harness.http.post("/api/instances/stop", json={"instanceName": "second", "returnToPool": True})
    assert back.status_code == 202, back.text
    assert "Returned to pool gpus" in back.json()["message"]
    stopped = await harness.until_status(second["instanceId"], "stopped")
    assert stopped["pool"]["state"] == "stopped" and stopped["name"].startswith("gpus-")
    assert stopped["webhookUrl"] is None and stopped["labels"] == {}
    view = await until_members(harness, ready=1, stopped=1, total=2)
    assert view["members"]["claimed"] == 0


async def test_deleting_a_pool_drains_idle_members_and_leaves_claimed_ones(harness: Harness) -> None:
    await make_pool(harness, minReady=1, minStopped=1, max=3)
    await until_members(harness, ready=1, stopped=1, total=2)
    kept = await claim(harness, name="kept")
    drained = await harness.http.delete("/api/pools/gpus")
    assert drained.status_code == 202 and drained.json()["status"] == "draining"
    assert (await harness.http.get("/api/pools/gpus")).status_code == 404  # gone at once; it drains behind
    assert (await harness.http.post("/api/pools/gpus/claim", json={"name": "late"})).status_code == 404

    async def drained_out() -> bool:
        return {i["id"] for i in harness.live_upstream()} == {kept["novitaInstanceId"]}

    await harness.run_until(drained_out, max_seconds=300)
    await harness.tick()
    listed = (await harness.http.get("/api/instances")).json()["instances"]
    live = [i for i in listed if i["status"] != "terminated"]
    assert [i["name"] for i in live] == ["kept"]
    assert live[0]["status"] == "ready" and live[0]["pool"] is None
    # The name is free again.
    await make_pool(harness, max=1)


async def test_an_idle_pool_stops_its_ready_members_and_a_claim_wakes_it(harness: Harness) -> None:
    await make_pool(harness, minReady=1, max=2, idleMinutes=30)
    await until_members(harness, ready=1, total=1)
    harness.clock.advance(timedelta(minutes=31).total_seconds())
    dormant = await until_members(harness, ready=0, stopped=1, total=1)
    assert dormant["dormant"] is True
    assert dormant["idleCost"]["readyUsdPerHour"] == 0
    assert dormant["idleCost"]["stoppedUsdPerHour"] > 0

    answer = await claim(harness, name="wakes-it")
    assert answer["claim"]["source"] == "stopped"
    awake = await until_members(harness, ready=1, claimed=1, total=2)
    assert awake["dormant"] is False


async def test_an_auto_stop_returns_the_instance_when_the_pool_says_so(harness: Harness) -> None:
    await make_pool(harness, minReady=1, minStopped=1, max=3, returnOnAutoStop=True)
    await until_members(harness, ready=1, stopped=1, total=2)
    mine = await claim(harness, name="idle-job", autoStop={"idleMinutes": 5})
    await until_members(harness, ready=1, stopped=1, claimed=1, total=3)
    # The pool has the idle members it keeps: the auto-stop's return deletes the instance.
    harness.clock.advance(6 * 60)
    swept = (await harness.services.sweeper.sweep(dry_run=False))["stopped"]
    assert [s["instanceId"] for s in swept] == [mine["instanceId"]]
    ended = await harness.until_status(mine["instanceId"], "terminated")
    assert ended["statusReason"] == "AUTO_STOP"
    assert "Returned to pool gpus" in (await harness.events(mine["instanceId"]))[-2]["message"]

    # With room (minStopped raised), the next one goes back as a stopped member.
    assert (await harness.http.patch("/api/pools/gpus", json={"minStopped": 2})).status_code == 200
    await until_members(harness, ready=1, stopped=2, total=3)
    assert (await harness.http.patch("/api/pools/gpus", json={"minStopped": 3})).status_code == 200
    second = await claim(harness, name="idle-job-2", autoStop={"idleMinutes": 5})
    harness.clock.advance(6 * 60)
    await harness.services.sweeper.sweep(dry_run=False)
    back = await harness.until_status(second["instanceId"], "stopped")
    assert back["pool"]["state"] == "stopped" and back["name"].startswith("gpus-")


async def test_a_prewarmed_pool_makes_cold_creates_pull_fast(harness: Harness) -> None:
    image = "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"
    sized = harness.emulator.put("/_emulator/images", json={"sizesGb": {image: 15}, "nodesPerCluster": 16})
    assert sized.status_code == 200, sized.text
    await make_pool(harness, minReady=1, max=20, prewarm=True)
    first = await until_members(harness, ready=1, total=1, max_seconds=900)
    [member] = (await harness.http.get("/api/instances")).json()["instances"]

    async def prewarmed() -> bool:
        tasks = (await pool_view(harness))["prewarm"]["tasks"]
        return [t["state"] for t in tasks] == ["Succeeded"]

    await harness.run_until(prewarmed, max_seconds=900, step=5)
    [task] = (await pool_view(harness))["prewarm"]["tasks"]
    assert task["clusterId"] == member["clusterId"] and first["prewarm"]["enabled"] is True
    # With no idle member kept, claims are cold creates: they land on other nodes of that cluster, and the
    # prewarm spares them the 150 s pull (the first member took 150 s in `pulling`).
    assert (await harness.http.patch("/api/pools/gpus", json={"minReady": 0})).status_code == 200
    await until_members(harness, total=0)
    for name in ("cold-a", "cold-b"):
        cold = await claim(harness, name=name)
        assert cold["claim"]["source"] == "cold"
        ready = await harness.until_status(cold["instanceId"], "ready", max_seconds=30)
        assert ready["clusterId"] == member["clusterId"]
    novita_key = {"Authorization": f"Bearer {NOVITA_KEY}"}
    tasks_at_novita = harness.emulator.get("/gpu-instance/openapi/v1/image/prewarm", headers=novita_key)
    assert tasks_at_novita.status_code == 200, tasks_at_novita.text
    assert tasks_at_novita.json()["total"] == 1  # asked once, however many keeper passes

    # Deleting the pool gives the prewarm task back (Novita allows ten per account).
    assert (await harness.http.delete("/api/pools/gpus")).status_code == 202
    await harness.tick()
    left = harness.emulator.get("/gpu-instance/openapi/v1/image/prewarm", headers=novita_key)
    assert left.json()["total"] == 0
