"""A create in doubt (sent, never answered: its process was killed or its connection dropped) is never sent
again; only a listing can show its instance. It does not keep the reconciler on fast ticks: at 10,000
instances each fast tick lists Novita (100 pages), and one such row made it list 30 times per 30 s for the
15 minutes until the create is given up, where steady instances need one listing per slow tick (issue 15,
bench scale with 3 replicas). The slow ticks still look for it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from novita_gpu.kit.tables import Instance
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
