"""A create in doubt (sent, never answered: its connection dropped or its call timed out) is never sent
again; only a listing can show its instance. It does not keep the reconciler on fast ticks: at 10,000
instances each fast tick lists Novita (100 pages), and one such row made it list 30 times per 30 s for the
15 minutes until the create is given up, where steady instances need one listing per slow tick
(bench scale with 3 replicas). The slow ticks still look for it.

A create whose sender died before any answer (a replica killed 1.2 s into a burst left 58 records
in `creating` for 15 minutes, then failed, Novita having never received their creates) is looked up until
its call would have ended and its answer would show, then sent again; should the first one complete after
all, ownership deletes the duplicate on sight. /health counts the creates in doubt meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from novita_gpu.instances.reconciler import Reconciler
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import CreateInstanceRequest, NovitaClient
from tests.harness import Harness


async def _in_doubt(harness: Harness, **body: Any) -> str:
    """A record whose create went out and was never answered (the intent written, no instance id)."""
    instance_id = str((await harness.create(**body))["instanceId"])
    async with harness.services.db.write() as session:
        await session.execute(
            update(Instance).where(Instance.id == instance_id).values(create_attempted_at=harness.clock.now())
        )
    return instance_id


async def test_a_create_in_doubt_alone_does_not_keep_the_reconciler_busy(harness: Harness) -> None:
    instance_id = await _in_doubt(harness)
    result = await harness.services.reconciler.tick()
    assert result.claimed == 1 and not result.busy
    assert harness.stats().get("POST /gpu/instance/create") is None  # never sent again
    assert (await harness.instance(instance_id))["status"] == "creating"


async def test_a_create_in_doubt_is_adopted_by_the_next_tick_once_its_instance_shows(harness: Harness) -> None:
    instance_id = await _in_doubt(harness)
    await harness.services.reconciler.tick()
    async with harness.services.db.read() as session:
        name = await session.scalar(select(Instance.upstream_name).where(Instance.id == instance_id))
    auth = {"Authorization": "Bearer k"}
    product = harness.emulator.get("/gpu-instance/openapi/v1/products", headers=auth).json()["data"][0]["id"]
    body = {"name": name, "productId": product, "gpuNum": 1, "rootfsSize": 60, "imageUrl": "img", "kind": "gpu"}
    made = harness.emulator.post("/gpu-instance/openapi/v1/gpu/instance/create", json=body, headers=auth)
    assert made.status_code == 200, made.text  # the create did reach Novita: only its answer was lost
    harness.clock.advance(15)  # a slow tick later
    await harness.services.reconciler.tick()
    assert (await harness.instance(instance_id))["novitaInstanceId"] == harness.upstream_instances()[0]["id"]
    assert harness.stats().get("POST /gpu/instance/create") == 1


# A create whose sender died before any answer (a replica killed mid-call) is looked for until its call would
# have ended plus AMBIGUOUS_CREATE_GRACE, then sent again: here 2 s + 5 s + 20 s = 27 s after it went out,
# and the dead sender's lease lapses after 10 s.
_SHORT_CALLS = {"novita_timeout_seconds": 2.0, "novita_retry_deadline_seconds": 5.0, "lease_seconds": 10.0}
_LOOKED_UP_FOR = 27.0


class _NeverReachesNovita:
    """A Novita client whose creates never arrive: the connection died before Novita read the request."""

    def __init__(self, client: NovitaClient) -> None:
        self._client = client

    async def create_instance(self, request: CreateInstanceRequest) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def _sent_by_a_replica_that_dies(harness: Harness, instance_id: str, *, reaches_novita: bool) -> None:
    """Another replica claims the record and sends its create; it is killed (kill -9) before any answer,
    so its lease is never given back."""
    services = harness.services
    doomed = Reconciler(
        services.db, services.clock, services.client, services.catalog, services.settings, services.instances.changes
    )
    if not reaches_novita:
        doomed.creating.client = _NeverReachesNovita(services.client)  # type: ignore[assignment]
    await doomed.tick()
    assert doomed.busy_rows() == {instance_id}  # its create is in flight
    doomed.runner.stop()  # what a kill leaves: nothing given back
    tasks = list(doomed.runner.in_flight.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _instances_check(harness: Harness) -> dict[str, Any]:
    answer = (await harness.http.get("/health")).json()
    checks: dict[str, Any] = answer["services"]["instances"]
    return checks


async def test_a_create_whose_sender_died_is_looked_up_then_sent_again(tmp_path: Path) -> None:
    async with Harness(tmp_path, **_SHORT_CALLS) as harness:
        instance_id = (await harness.create())["instanceId"]
        await _sent_by_a_replica_that_dies(harness, instance_id, reaches_novita=False)

        harness.clock.advance(11)  # its lease has lapsed: this replica takes the row and looks the name up
        await harness.tick()
        assert harness.stats().get("POST /gpu/instance/create") is None  # not yet sent again
        check = await _instances_check(harness)
        assert (check["status"], check["createsInDoubt"], check["oldestCreateInDoubtSeconds"]) == ("up", 1, 11)

        harness.clock.advance(_LOOKED_UP_FOR - 11)
        await harness.tick()  # its look-up has ended: sent again
        assert harness.stats().get("POST /gpu/instance/create") == 1
        ready = await harness.until_status(instance_id, "ready", "failed")
        assert ready["status"] == "ready"
        assert [i["id"] for i in harness.live_upstream()] == [ready["novitaInstanceId"]]
        assert (await _instances_check(harness))["createsInDoubt"] == 0


async def test_a_create_whose_sender_died_and_that_completes_after_it_was_sent_again_leaves_one_instance(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, **_SHORT_CALLS) as harness:
        instance_id = (await harness.create())["instanceId"]
        harness.faults(create_delay_seconds=120)  # Novita got the first create, and makes it 2 minutes later
        await _sent_by_a_replica_that_dies(harness, instance_id, reaches_novita=True)
        harness.faults(create_delay_seconds=0)

        harness.clock.advance(_LOOKED_UP_FOR + 1)
        await harness.tick()  # nothing under its name yet: sent again
        assert harness.stats().get("POST /gpu/instance/create") == 2
        ready = await harness.until_status(instance_id, "ready", "failed")
        assert ready["status"] == "ready"

        harness.clock.advance(120)  # the first create completes: a second instance under the record's name
        await harness.tick(2)  # ownership deletes it on sight
        assert (await harness.instance(instance_id))["novitaInstanceId"] == ready["novitaInstanceId"]
        name = await harness.upstream_name(instance_id)
        live = [i for i in harness.live_upstream() if i["name"] == name and i["visible"]]
        assert [i["id"] for i in live if i["status"] not in ("toRemove", "removing")] == [ready["novitaInstanceId"]]
        assert len(harness.upstream_instances()) == 2  # the late one was made, and is on its way out


async def test_health_reports_a_create_of_a_dead_sender_not_sent_again_in_time(tmp_path: Path) -> None:
    async with Harness(tmp_path, **_SHORT_CALLS) as harness:
        instance_id = (await harness.create())["instanceId"]
        await _sent_by_a_replica_that_dies(harness, instance_id, reaches_novita=False)
        harness.clock.advance(_LOOKED_UP_FOR + 61)  # no reconciler ran meanwhile
        check = await _instances_check(harness)
        assert (check["status"], check["pastDeadline"], check["createsInDoubt"]) == ("degraded", 1, 1)
        await harness.tick()  # it runs: the create is sent again
        check = await _instances_check(harness)
        assert (check["status"], check["pastDeadline"], check["createsInDoubt"]) == ("up", 0, 0)
