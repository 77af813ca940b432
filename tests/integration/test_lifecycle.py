"""Create-to-ready and the lifecycle after it, through our API against the emulator."""

from __future__ import annotations

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
