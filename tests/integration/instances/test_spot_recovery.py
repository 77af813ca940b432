"""Spot recovery over HTTP against the emulator: a reclaimed spot instance comes back under the same record
by each path (docs/spot.md), keeps its volume's data but not its local disk, gives way to a stop or a
delete, and never leaves two billed instances."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from novita_gpu.instances.schemas import InstanceAnswer
from novita_gpu.kit.tables import WebhookDelivery
from tests.harness import Harness
from tests.integration.volumes.test_volumes_api import TX, create_volume

EU = "5"  # EU-01: the cheapest cluster with RTX 4090 spot capacity, where spot instances land
SPOT_CLUSTERS = ("1", "2", "3", "5")  # every cluster that sells RTX 4090 spot


async def ready_spot(harness: Harness, **fields: Any) -> dict[str, Any]:
    created = await harness.create(billingMode="spot", webhookUrl="http://127.0.0.1:9/hook", **fields)
    return await harness.until_status(created["instanceId"], "ready")


def reclaim(harness: Harness, novita_id: str) -> None:
    answer = harness.emulator.post(f"/_emulator/instances/{novita_id}/reclaim")
    assert answer.status_code == 200, answer.text


def spot_settings(harness: Harness, **settings: Any) -> None:
    answer = harness.emulator.put("/_emulator/spot", json=settings)
    assert answer.status_code == 200, answer.text


def live_of(harness: Harness, view: dict[str, Any], upstream_name: str) -> list[dict[str, Any]]:
    """The record's Novita instances that still exist (under its name or a recreate's `-r<n>`)."""
    return [
        i
        for i in harness.upstream_instances()
        if i["status"] not in ("removed", "removing", "toRemove")
        and (i["name"] == upstream_name or i["name"].startswith(f"{upstream_name}-r"))
    ]


async def only_live(harness: Harness, view: dict[str, Any], upstream_name: str) -> dict[str, Any]:
    """The record's one live Novita instance, once ownership has deleted any other (its next listing)."""

    async def one() -> bool:
        return len(live_of(harness, view, upstream_name)) == 1

    await harness.run_until(one, max_seconds=60)
    [live] = live_of(harness, view, upstream_name)
    return live


async def webhooks(harness: Harness, instance_id: str) -> list[dict[str, Any]]:
    async with harness.services.db.read() as session:
        rows = (
            await session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.instance_id == instance_id)
                .order_by(WebhookDelivery.event_id)
            )
        ).all()
    return [row.payload for row in rows]


async def recovered(harness: Harness, instance_id: str, novita_id: str) -> dict[str, Any]:
    """Reclaim the instance and wait until the record is ready again after a recovery."""
    attempts = (await harness.instance(instance_id))["recovery"]["attempt"]
    reclaim(harness, novita_id)

    async def back() -> bool:
        view = await harness.instance(instance_id)
        done = view["recovery"]["attempt"] > attempts and not view["recovery"]["inProgress"]
        return view["status"] == "ready" and done

    await harness.run_until(back, max_seconds=900)
    view = await harness.instance(instance_id)
    InstanceAnswer.model_validate(view)
    return view


async def test_a_reclaimed_instance_is_migrated_under_its_id_and_every_step_is_told(harness: Harness) -> None:
    ready = await ready_spot(harness)
    name = await harness.upstream_name(ready["instanceId"])
    assert ready["recovery"] == {
        "onReclaim": "migrate",
        "maxRecoveries": 3,
        "fallbackToOnDemand": False,
        "keepReclaimed": False,
        "inProgress": False,
        "attempt": 0,
        "path": None,
        "startedAt": None,
        "onDemand": False,
        "keptInstanceIds": [],
        "history": [],
    }
    back = await recovered(harness, ready["instanceId"], ready["novitaInstanceId"])

    assert back["novitaInstanceId"] == ready["novitaInstanceId"]
    assert back["recovery"]["attempt"] == 1 and back["recovery"]["path"] == "migrate"
    [step] = back["recovery"]["history"]
    assert step["path"] == "migrate" and step["outcome"] == "recovered"
    assert step["upstreamId"] == ready["novitaInstanceId"]
    assert back["readyAt"] == ready["readyAt"]  # maxRuntimeMinutes still counts from the first ready
    assert back["autoStop"]["lastUsedAt"] == ready["autoStop"]["lastUsedAt"]  # the idle clock goes on
    assert back["connectionDetails"]["ports"] != []
    assert (await only_live(harness, back, name))["id"] == back["novitaInstanceId"]

    sent = await webhooks(harness, ready["instanceId"])
    names = [w["event"] for w in sent]
    after_ready = names[names.index("instance.ready") + 1 :]
    assert after_ready == [
        "instance.reclaim_notice",
        "instance.reclaimed",
        "instance.recovering",
        "instance.starting",
        "instance.running",
        "instance.health_checking",
        "instance.ready",
    ], names
    notice = sent[names.index("instance.reclaim_notice")]
    assert "checkpoint" in notice["data"]["statusMessage"] and "UTC" in notice["data"]["statusMessage"]
    assert notice["status"] == "ready" and notice["data"]["statusReason"] is None  # nothing reclaimed yet
    history = await harness.events(ready["instanceId"])
    assert [e["event"] for e in history[-7:]] == after_ready  # the history names them as webhooks do
    reclaimed = sent[names.index("instance.reclaimed")]
    assert "reclaimed this spot instance" in reclaimed["data"]["statusMessage"]
    assert "attempt 1 of 3" in reclaimed["data"]["statusMessage"]
    for payload in sent[names.index("instance.reclaimed") :]:
        assert payload["recovered"] is True and payload["attempt"] == 1, payload
        assert payload["data"]["statusMessage"], payload
    metrics = (await harness.http.get("/api/metrics")).json()["spot"]
    assert metrics == {"reclaims": 1, "recoveries": {"migrate:recovered": 1}}


async def test_a_migrate_that_moves_the_instance_to_a_new_id_is_followed(harness: Harness) -> None:
    spot_settings(harness, migrateNewId=True)
    ready = await ready_spot(harness)
    name = await harness.upstream_name(ready["instanceId"])
    back = await recovered(harness, ready["instanceId"], ready["novitaInstanceId"])
    assert back["novitaInstanceId"] != ready["novitaInstanceId"]
    assert back["recovery"]["history"][0]["upstreamId"] == back["novitaInstanceId"]
    assert (await only_live(harness, back, name))["id"] == back["novitaInstanceId"]


@pytest.mark.parametrize("fault", ["refused", "job_fails"])
async def test_a_failed_migrate_becomes_a_recreate_and_the_reclaimed_instance_goes(
    harness: Harness, fault: str
) -> None:
    ready = await ready_spot(harness)
    name = await harness.upstream_name(ready["instanceId"])
    if fault == "refused":
        harness.faults(failures=[{"path": "/gpu/instance/migrate", "status": 400, "reason": "MIGRATE_REFUSED"}])
    else:
        harness.faults(migrate_job_fails=1)
    back = await recovered(harness, ready["instanceId"], ready["novitaInstanceId"])

    migrate, recreate = back["recovery"]["history"]
    assert (migrate["path"], migrate["outcome"]) == ("migrate", "failed")
    assert migrate["message"] and ("MIGRATE_REFUSED" in migrate["message"] or "refused" in migrate["message"]) == (
        fault == "refused"
    )
    assert (recreate["path"], recreate["outcome"], recreate["attempt"]) == ("recreate", "recovered", 1)
    assert back["novitaInstanceId"] == recreate["upstreamId"] != ready["novitaInstanceId"]
    assert back["clusterId"] == EU  # the reclaimed instance's cluster first
    live = await only_live(harness, back, name)  # the reclaimed one is deleted once the replacement is ready
    assert live["id"] == back["novitaInstanceId"] and live["name"] == f"{name}-r1"
    assert back["billingMode"] == "spot"


async def test_recreate_keeps_the_reclaimed_instance_when_asked(harness: Harness) -> None:
    ready = await ready_spot(harness, recovery={"onReclaim": "recreate", "keepReclaimed": True})
    name = await harness.upstream_name(ready["instanceId"])
    back = await recovered(harness, ready["instanceId"], ready["novitaInstanceId"])
    [step] = back["recovery"]["history"]
    assert step["path"] == "recreate" and step["outcome"] == "recovered"
    assert back["recovery"]["keptInstanceIds"] == [ready["novitaInstanceId"]]
    await harness.tick(3)  # ownership would have deleted it by now
    live = {i["id"] for i in live_of(harness, back, name)}
    assert live == {ready["novitaInstanceId"], back["novitaInstanceId"]}
    running = [i for i in harness.upstream_instances() if i["id"] in live and i["status"] == "running"]
    assert [i["id"] for i in running] == [back["novitaInstanceId"]]  # one billed GPU

    deleted = await harness.http.delete(f"/api/instances/{ready['instanceId']}")
    assert deleted.status_code == 202
    await harness.until_status(ready["instanceId"], "terminated")
    await harness.run_until(lambda: _none_live(harness, back, name), max_seconds=120)


async def _none_live(harness: Harness, view: dict[str, Any], name: str) -> bool:
    return live_of(harness, view, name) == []


async def test_without_spot_capacity_the_replacement_is_on_demand_when_allowed(harness: Harness) -> None:
    ready = await ready_spot(harness, recovery={"onReclaim": "recreate", "fallbackToOnDemand": True})
    spot_settings(harness, capacity=dict.fromkeys(SPOT_CLUSTERS, 0))
    back = await recovered(harness, ready["instanceId"], ready["novitaInstanceId"])
    assert back["billingMode"] == "onDemand" and back["recovery"]["onDemand"] is True
    assert back["pricePerHour"] > ready["pricePerHour"]  # on-demand costs more, and the view says so
    events = await harness.events(ready["instanceId"])
    assert any("on-demand" in (e["message"] or "") for e in events if e["to"] == "recovering")


async def test_without_spot_capacity_it_waits_then_fails_no_capacity_and_can_start_later(tmp_path: Any) -> None:
    async with Harness(tmp_path, capacity_wait_seconds=60) as harness:
        ready = await ready_spot(harness, recovery={"onReclaim": "recreate"})
        spot_settings(harness, capacity=dict.fromkeys(SPOT_CLUSTERS, 0))
        reclaim(harness, ready["novitaInstanceId"])
        failed = await harness.until_status(ready["instanceId"], "failed", max_seconds=300)
        assert failed["statusReason"] == "NO_CAPACITY"
        assert failed["recovery"]["history"][-1]["outcome"] == "failed"
        # The record holds the reclaimed instance again: once spot capacity is back, a start brings it back.
        assert failed["novitaInstanceId"] == ready["novitaInstanceId"]
        spot_settings(harness, capacity={})
        started = await harness.http.post(f"/api/instances/{ready['instanceId']}/start")
        assert started.status_code == 202, started.text
        await harness.until_status(ready["instanceId"], "ready")


async def test_past_max_recoveries_it_stays_stopped_and_says_why(harness: Harness) -> None:
    ready = await ready_spot(harness, recovery={"maxRecoveries": 1})
    back = await recovered(harness, ready["instanceId"], ready["novitaInstanceId"])
    reclaim(harness, back["novitaInstanceId"])
    stopped = await harness.until_status(ready["instanceId"], "stopped")
    assert stopped["statusReason"] == "SPOT_RECLAIMED"
    assert "maxRecoveries (1)" in stopped["statusMessage"]
    assert stopped["recovery"]["attempt"] == 1


async def test_a_volume_keeps_its_data_through_migrate_and_recreate_but_the_local_disk_does_not(
    harness: Harness,
) -> None:
    spot_settings(harness, capacity={"5": 0, "1": 0})  # TX's spot is what is left where the volume is
    volume = await create_volume(harness)
    ready = await ready_spot(harness, volumes=[{"volume": "datasets", "mountPoint": "/data"}])
    assert ready["region"] == TX
    marker = harness.emulator.put(f"/_emulator/volumes/{volume['storageId']}/data", json={"bytes": "epoch-7.ckpt"})
    assert marker.status_code == 200
    disk = harness.emulator.put(f"/_emulator/instances/{ready['novitaInstanceId']}/disk", json={"bytes": "scratch"})
    assert disk.status_code == 200

    migrated = await recovered(harness, ready["instanceId"], ready["novitaInstanceId"])
    assert harness.emulator.get(f"/_emulator/instances/{migrated['novitaInstanceId']}/disk").json()["bytes"] == ""
    mounted = harness.emulator.get(f"/_emulator/instances/{migrated['novitaInstanceId']}/volumes").json()
    assert [m["bytes"] for m in mounted] == ["epoch-7.ckpt"], mounted

    patched = await harness.http.patch(
        f"/api/instances/{ready['instanceId']}", json={"recovery": {"onReclaim": "recreate"}}
    )
    assert patched.status_code == 200 and patched.json()["recovery"]["onReclaim"] == "recreate"
    recreated = await recovered(harness, ready["instanceId"], migrated["novitaInstanceId"])
    assert recreated["novitaInstanceId"] != migrated["novitaInstanceId"]
    assert recreated["region"] == TX  # the only cluster allowed: where its volume is
    mounted = harness.emulator.get(f"/_emulator/instances/{recreated['novitaInstanceId']}/volumes").json()
    assert [m["bytes"] for m in mounted] == ["epoch-7.ckpt"], mounted
    assert [s["outcome"] for s in recreated["recovery"]["history"]] == ["recovered", "recovered"]


@pytest.mark.parametrize("path", ["migrate", "recreate"])
@pytest.mark.parametrize("action", ["stop", "delete"])
async def test_a_stop_or_delete_during_the_recovery_wins_and_leaves_nothing_billed(
    harness: Harness, path: str, action: str
) -> None:
    ready = await ready_spot(harness, recovery={"onReclaim": path})
    name = await harness.upstream_name(ready["instanceId"])
    reclaim(harness, ready["novitaInstanceId"])
    await harness.until_status(ready["instanceId"], "recovering")
    await harness.tick()  # the migrate (once the reclaim ends) or the replacement's create is on its way
    if action == "stop":
        answer = await harness.http.post(f"/api/instances/{ready['instanceId']}/stop")
    else:
        answer = await harness.http.delete(f"/api/instances/{ready['instanceId']}")
    assert answer.status_code == 202, answer.text
    end = "stopped" if action == "stop" else "terminated"
    view = await harness.until_status(ready["instanceId"], end)
    assert view["recovery"]["inProgress"] is False
    assert view["recovery"]["history"][-1]["outcome"] == "abandoned"

    async def nothing_billed() -> bool:
        live = live_of(harness, view, name)
        return all(i["status"] == "exited" for i in live) and len(live) <= (1 if action == "stop" else 0)

    await harness.run_until(nothing_billed, max_seconds=300)
    if action == "stop":  # it can be started again
        started = await harness.http.post(f"/api/instances/{ready['instanceId']}/start")
        assert started.status_code == 202, started.text
        await harness.until_status(ready["instanceId"], "ready")
        assert (await only_live(harness, view, name))["status"] == "running"


async def test_bad_recovery_policies_are_400_in_the_envelope(harness: Harness) -> None:
    for policy in ({"onReclaim": "pray"}, {"maxRecoveries": -1}, {"maxRecoveries": 1e30}, {"keep": True}):
        answer = await harness.http.post(
            "/api/instances",
            json={"name": "x", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter", "recovery": policy},
        )
        assert answer.status_code == 400, (policy, answer.text)
        assert answer.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_a_replacement_novita_refuses_ends_recovery_failed_on_the_reclaimed_instance(harness: Harness) -> None:
    ready = await ready_spot(harness, recovery={"onReclaim": "recreate"})
    harness.faults(failures=[{"path": "/gpu/instance/create", "status": 400, "reason": "INVALID_IMAGE", "count": 5}])
    reclaim(harness, ready["novitaInstanceId"])
    failed = await harness.until_status(ready["instanceId"], "failed")
    assert failed["statusReason"] == "RECOVERY_FAILED"
    assert failed["statusMessage"].startswith("Recovery attempt 1 (recreate) failed: Novita refused the create")
    assert failed["novitaInstanceId"] == ready["novitaInstanceId"]  # back on the reclaimed one, to start later
    sent = [w["event"] for w in await webhooks(harness, ready["instanceId"])]
    assert sent[-1] == "instance.failed"
    metrics = (await harness.http.get("/api/metrics")).json()["spot"]
    assert metrics["recoveries"] == {"recreate:failed": 1}


async def test_a_migrate_done_between_two_looks_still_shows_starting(harness: Harness) -> None:
    ready = await ready_spot(harness)
    reclaim(harness, ready["novitaInstanceId"])

    async def migrating() -> bool:
        [truth] = [i for i in harness.upstream_instances() if i["id"] == ready["novitaInstanceId"]]
        return bool(truth["status"] == "migrating")

    await harness.run_until(migrating, max_seconds=120)
    harness.clock.advance(300)  # the next look finds it running already
    await harness.until_status(ready["instanceId"], "ready")
    steps = [e["to"] for e in await harness.events(ready["instanceId"])]
    assert steps[steps.index("recovering") :][-5:] == ["recovering", "starting", "running", "health_checking", "ready"]


async def test_a_stop_while_the_replacement_waits_for_capacity_goes_back_to_the_reclaimed_instance(
    harness: Harness,
) -> None:
    ready = await ready_spot(harness, recovery={"onReclaim": "recreate"})
    spot_settings(harness, capacity=dict.fromkeys(SPOT_CLUSTERS, 0))
    reclaim(harness, ready["novitaInstanceId"])

    async def waiting() -> bool:
        view = await harness.instance(ready["instanceId"])
        return view["status"] == "recovering" and "waiting" in (view["statusMessage"] or "")

    await harness.run_until(waiting, max_seconds=120)
    assert (await harness.http.post(f"/api/instances/{ready['instanceId']}/stop")).status_code == 202
    view = await harness.until_status(ready["instanceId"], "stopped")
    assert view["novitaInstanceId"] == ready["novitaInstanceId"]  # shown where it is, not where a create was tried
    assert (view["clusterId"], view["region"], view["pricePerHour"], view["billingMode"]) == (
        ready["clusterId"],
        ready["region"],
        ready["pricePerHour"],
        "spot",
    )


async def test_after_a_notice_the_reconciler_looks_again_just_after_the_reclaim_is_due(harness: Harness) -> None:
    """The stop is seen a second after Novita's deadline, not at the next slow tick (up to 15 s later)."""
    ready = await ready_spot(harness)
    spot_settings(harness, noticeSeconds=20)
    reclaim(harness, ready["novitaInstanceId"])
    harness.clock.advance(12)  # the notice is seen on a steady tick, 8 s before the stop
    wait = await harness.services.reconciler.step()
    assert 8.0 <= wait <= 9.5, wait  # the deadline and a second, not RECONCILE_SLOW_SECONDS (15)
    events = await harness.events(ready["instanceId"])
    assert "checkpoint" in (events[-1]["message"] or "")
    harness.clock.advance(wait)
    assert await harness.services.reconciler.step() <= 15
    await harness.services.reconciler.tick()
    assert (await harness.instance(ready["instanceId"]))["status"] == "recovering"
