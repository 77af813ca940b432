"""Contract: the client's image prewarm calls (create, list by cluster, delete, quota) against the real
emulator over loopback HTTP, a prewarm making a later cold create pull fast, and a start refused for
capacity read as `InsufficientResource`."""

from __future__ import annotations

from typing import Any

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.novita import (
    InsufficientResource,
    NotFound,
    NovitaClient,
    PrewarmProduct,
    UpstreamUnavailable,
)
from tests.fixtures.novita_client import Observed, Sleeps
from tests.fixtures.novita_emulator import Emulator
from tests.integration.novita.test_novita_contract import request

T = EmulatorConfig().timings
IMAGE = "ghcr.io/team/trainer:2.1"
CREATE_PATH = "POST /image/prewarm"


def control(emu: Emulator, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = emu.control.request(method, path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def pulling_seconds(emu: Emulator, instance_id: str) -> float:
    history = control(emu, "GET", f"/_emulator/instances/{instance_id}")["history"]
    at = {h["status"]: h["at"] for h in history}
    return round(at["running"] - at["pulling"], 3)


async def test_a_prewarm_goes_pending_running_succeeded_then_cold_creates_pull_fast(
    emu: Emulator, client: NovitaClient, observed: Observed
) -> None:
    control(emu, "PUT", "/_emulator/images", {"sizesGb": {IMAGE: 15}})
    task_id = await client.create_prewarm_task(IMAGE, "1", product_ids=["4090.16c62g"], note="pool a")
    other = await client.create_prewarm_task(IMAGE, "2")
    [task] = (await client.list_prewarm_tasks(cluster_id="1")).tasks
    assert (task.id, task.state, task.finished, task.image_url, task.image_name) == (
        task_id,
        "Pending",
        False,
        IMAGE,
        "trainer",
    )
    assert (task.cluster_id, task.cluster_name, task.note, task.image_size) == ("1", "US-CA-06", "pool a", 15 * 1024**3)
    assert task.products == [PrewarmProduct(product_id="4090.16c62g", product_name="RTX 4090 24GB")]
    assert task.create_time is not None and task.complete_time is None and task.reason == []

    emu.clock.advance(T.prewarm_pending)
    assert [t.state async for t in client.iter_prewarm_tasks(cluster_id="1")] == ["Running"]
    emu.clock.advance(150)  # 15 GB at 0.1 GB/s
    [done] = [t async for t in client.iter_prewarm_tasks(cluster_id="1", state="Succeeded")]
    assert done.succeeded and done.finished and done.complete_time is not None
    assert {t.id for t in (await client.list_prewarm_tasks()).tasks} == {task_id, other}

    warm = await client.create_instance(request("ng-warm", image_url=IMAGE, cluster_id="1"))
    emu.clock.advance(T.to_create + T.creating + 1)
    assert (await client.get_instance(warm)).status == "running"
    assert pulling_seconds(emu, warm) == 1
    assert ("image_prewarm.create", "ok") in observed and ("image_prewarm.list", "ok") in observed


async def test_delete_and_quota(emu: Emulator, client: NovitaClient) -> None:
    first = await client.create_prewarm_task(IMAGE, "1")
    second = await client.create_prewarm_task("vllm/vllm-openai:latest", "5")
    quota = await client.prewarm_quota()
    assert (quota.total, quota.limit, quota.per_image_size) == (2, 10, 50)
    with pytest.raises(NotFound):
        await client.delete_prewarm_tasks([first, "nope"])  # all or nothing
    await client.delete_prewarm_tasks([first])
    assert [t.id for t in (await client.list_prewarm_tasks()).tasks] == [second]
    await client.delete_prewarm_tasks([])  # nothing to send
    assert (await client.prewarm_quota()).total == 1


async def test_the_create_is_sent_once_and_reads_are_retried(
    emu: Emulator, client: NovitaClient, sleeps: Sleeps
) -> None:
    emu.faults(failures=[{"path": "/image/prewarm", "method": "POST", "status": 503}])
    with pytest.raises(UpstreamUnavailable):
        await client.create_prewarm_task(IMAGE, "1")
    assert emu.stats()[CREATE_PATH] == 1 and sleeps == []
    emu.faults(failures=[{"path": "/image/prewarm", "method": "GET", "status": 503}])
    assert (await client.list_prewarm_tasks()).total == 0
    assert emu.stats()["GET /image/prewarm"] == 2 and len(sleeps) == 1


async def test_a_start_refused_for_capacity_is_insufficient_resource(emu: Emulator, client: NovitaClient) -> None:
    instance_id = await client.create_instance(request("ng-stopped"))
    emu.clock.advance(T.to_create + T.creating + T.pulling)
    await client.stop_instance(instance_id)
    emu.clock.advance(T.to_stop + T.stopping)
    control(emu, "PUT", "/_emulator/start-refusals", {"instanceIds": [instance_id]})
    with pytest.raises(InsufficientResource) as refused:
        await client.start_instance(instance_id)
    assert (refused.value.status, refused.value.reason) == (400, "INSUFFICIENT_RESOURCE")
    assert emu.stats()["POST /gpu/instance/start"] == 1  # a business error: not retried
    await client.start_instance(instance_id)  # the refusal was for one start
    emu.clock.advance(T.to_start + T.starting)
    assert (await client.get_instance(instance_id)).status == "running"
