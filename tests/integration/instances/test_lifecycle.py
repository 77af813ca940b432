"""Create-to-ready and the lifecycle after it, through our API against the emulator."""

from __future__ import annotations

import asyncio

from novita_gpu.kit.db import WORKER_WRITES_PER_PASS
from tests.harness import Harness


async def test_create_reaches_ready_with_connection_details(harness: Harness) -> None:
    created = await harness.create()
    assert created["status"] == "creating"
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["status"] == "ready"
    ports = {p["port"]: p for p in ready["connectionDetails"]["ports"]}
    assert ports[8888]["type"] == "http" and ports[8888]["endpoint"].startswith("http://")
    assert ready["healthCheck"]["status"] == "healthy"
    assert ready["novitaInstanceId"] and ready["region"] and ready["pricePerHour"] > 0
    flow = [e["to"] for e in await harness.events(created["instanceId"])]
    assert flow == ["creating", "starting", "running", "health_checking", "ready"]
    assert len(harness.live_upstream()) == 1


async def test_a_tick_that_moves_many_rows_lets_the_event_loop_serve_others_between_them(harness: Harness) -> None:
    """SQLite runs inline: without turns (Database.worker_write), one tick's row writes would all run in
    one loop pass and every API request would wait behind the whole batch."""
    created = [await harness.create() for _ in range(2 * WORKER_WRITES_PER_PASS + 4)]
    await harness.tick()  # created upstream; the next moves happen without calling Novita per row
    harness.clock.advance(2)

    passes = 0
    writes_per_pass: dict[int, int] = {}

    def on_change(_instance_id: str | None) -> None:
        writes_per_pass[passes] = writes_per_pass.get(passes, 0) + 1

    async def count_passes() -> None:
        nonlocal passes
        while True:
            passes += 1
            await asyncio.sleep(0)

    harness.services.reconciler.changes.subscribe(on_change)
    counter = asyncio.create_task(count_passes())
    try:
        result = await harness.services.reconciler.tick()
    finally:
        counter.cancel()
    assert result.changed == len(created)
    assert sum(writes_per_pass.values()) >= len(created)
    assert max(writes_per_pass.values()) <= WORKER_WRITES_PER_PASS


async def test_every_step_of_the_flow_shows_even_when_novita_passes_one_between_two_looks(harness: Harness) -> None:
    """Webhook receivers follow creating → starting → running → health_checking → ready (the quick-start's
    flow); a reconciler that first looks after Novita already runs the instance still records `starting`."""
    created = await harness.create()
    await harness.tick()  # the upstream create
    harness.clock.advance(600)  # Novita boots it meanwhile
    ready = await harness.until_status(created["instanceId"], "ready", "failed")
    assert ready["status"] == "ready"
    flow = [e["to"] for e in await harness.events(created["instanceId"])]
    assert flow == ["creating", "starting", "running", "health_checking", "ready"]
