"""Auto-stop by GPU utilization, end to end: instances created over HTTP, their GPUs' utilization set in the
emulator (which serves Novita's metrics endpoint a minute late), time moved on the shared clock, and the
workers' steps run as the app runs them (reconciler, GPU poller, sweeper). What a user sees is checked:
the instance's status, view, events and webhooks, and the auto-stop stats."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from novita_gpu.instances.schemas import InstanceAnswer
from tests.fixtures.receivers import Receiver
from tests.harness import Harness, harness_on

MINUTE = 60.0


async def ready(h: Harness, **body: Any) -> dict[str, Any]:
    created = await h.create(**body)
    return await h.until_status(created["instanceId"], "ready")


def utilization(h: Harness, view: dict[str, Any], body: dict[str, Any]) -> None:
    response = h.emulator.put(f"/_emulator/instances/{view['novitaInstanceId']}/utilization", json=body)
    assert response.status_code == 200, response.text


async def run_for(h: Harness, seconds: float, *, step: float = MINUTE, ping: str | None = None) -> None:
    """Move time on by `step`, running the workers' steps after each move (and marking `ping` used)."""
    moved = 0.0
    while moved < seconds:
        h.clock.advance(step)
        moved += step
        if ping is not None:
            assert (await h.http.put(f"/api/instances/{ping}/last-used")).status_code == 200
        await h.tick()
        await h.services.gpu_poller.step()
        await h.services.sweeper.step()


def metrics_calls(h: Harness) -> int:
    return h.stats().get("GET /metrics/gpu/instance", 0)


GPU = {"idleMinutes": 30, "signal": "gpu", "gpuIdleBelowPercent": 5}


async def test_busy_gpus_and_no_pings_are_kept_at_one_call_per_window(harness: Harness) -> None:
    view = await ready(harness, autoStop=GPU)
    assert view["autoStop"]["signal"] == "gpu" and view["autoStop"]["stopsAt"] is None
    utilization(harness, view, {"level": 85})
    await run_for(harness, 3 * 60 * MINUTE)  # six windows, not a single ping
    now = await harness.instance(view["instanceId"])
    assert now["status"] == "ready"
    gpu = now["autoStop"]["gpu"]
    assert gpu["state"] == "busy" and gpu["avgPercent"] == 85 and gpu["fallback"] is None
    assert datetime.fromisoformat(gpu["nextCheckAt"]) > harness.clock.now()
    assert 5 <= metrics_calls(harness) <= 6  # one look per 30-minute window (the first after 31 min)
    InstanceAnswer.model_validate(now)  # the view with a verdict is what the document says


async def test_idle_gpus_are_stopped_after_their_window_and_not_before(harness: Harness, receiver: Receiver) -> None:
    view = await ready(harness, autoStop=GPU, webhookUrl=receiver.url)
    instance_id = view["instanceId"]
    utilization(harness, view, {"level": 1.5})
    await run_for(harness, 30 * MINUTE)  # the window has passed, but its last minute is not in Novita's data yet
    assert (await harness.instance(instance_id))["status"] == "ready"
    await run_for(harness, 3 * MINUTE)
    stopped = await harness.until_status(instance_id, "stopped")
    assert stopped["statusReason"] == "AUTO_STOP"
    decision = stopped["autoStop"]["lastDecision"]
    assert decision["signal"] == "gpu" and decision["gpuAvgPercent"] == 1.5 and decision["gpuIdleBelowPercent"] == 5
    assert decision["samples"] >= 120  # the whole 30-minute window at 15 s
    ready_at = datetime.fromisoformat(stopped["readyAt"])
    assert datetime.fromisoformat(decision["decidedAt"]) >= ready_at + timedelta(minutes=31)
    [stopping] = [e for e in await harness.events(instance_id) if e["to"] == "stopping"]
    assert stopping["reason"] == "AUTO_STOP" and "average GPU utilization 1.5%" in stopping["message"]
    while await harness.services.dispatcher.tick():
        pass
    hooks = {b["status"]: b for b in receiver.bodies}
    assert hooks["stopping"]["data"]["statusReason"] == "AUTO_STOP"
    assert hooks["stopped"]["data"]["autoStopDecision"]["signal"] == "gpu"
    stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
    assert stats["bySignal"]["gpu"]["stopped"] == 1 and stats["bySignal"]["lastUsed"]["stopped"] == 0


async def test_broken_metrics_never_stop_on_a_guess_and_fall_back_to_last_used(harness: Harness) -> None:
    view = await ready(harness, autoStop=GPU)
    instance_id = view["instanceId"]
    utilization(harness, view, {"level": None})  # Novita answers with no samples at all
    await run_for(harness, 2 * 60 * MINUTE, step=5 * MINUTE, ping=instance_id)  # pinged every 5 minutes
    kept = await harness.instance(instance_id)
    assert kept["status"] == "ready"
    gpu = kept["autoStop"]["gpu"]
    assert gpu["state"] == "unavailable" and gpu["fallback"] == "lastUsed" and gpu["reason"].startswith("NO_SAMPLES")

    harness.faults(failures=[{"path": "/metrics/gpu/instance", "status": 404, "reason": "NOT_FOUND", "count": 50}])
    await run_for(harness, 60 * MINUTE, step=5 * MINUTE, ping=instance_id)
    gpu = (await harness.instance(instance_id))["autoStop"]["gpu"]
    assert gpu["state"] == "unavailable" and "METRICS_ERROR" in gpu["reason"] and "NOT_FOUND" in gpu["reason"]
    assert (await harness.instance(instance_id))["status"] == "ready"

    last_ping = harness.clock.now()
    await run_for(harness, 29 * MINUTE)  # the pings stop: lastUsed decides, a window after the last one
    assert (await harness.instance(instance_id))["status"] == "ready"
    await run_for(harness, 2 * MINUTE)
    stopped = await harness.until_status(instance_id, "stopped")
    decision = stopped["autoStop"]["lastDecision"]
    assert decision["signal"] == "lastUsed" and decision["configuredSignal"] == "gpu"
    assert "METRICS_ERROR" in decision["fallbackReason"]
    assert datetime.fromisoformat(decision["decidedAt"]) >= last_ping + timedelta(minutes=30)
    [stopping] = [e for e in await harness.events(instance_id) if e["to"] == "stopping"]
    assert "GPU metrics unavailable" in stopping["message"]


async def test_max_runtime_ends_a_busy_instance(harness: Harness) -> None:
    view = await ready(harness, autoStop=GPU, maxRuntimeMinutes=90)
    instance_id = view["instanceId"]
    ends_at = datetime.fromisoformat(view["autoStop"]["maxRuntimeEndsAt"])
    assert ends_at == datetime.fromisoformat(view["readyAt"]) + timedelta(minutes=90)
    utilization(harness, view, {"level": 99})
    await run_for(harness, 89 * MINUTE, ping=instance_id)
    assert (await harness.instance(instance_id))["status"] == "ready"
    await run_for(harness, 2 * MINUTE, ping=instance_id)
    stopped = await harness.until_status(instance_id, "stopped")
    assert stopped["statusReason"] == "MAX_RUNTIME"
    assert stopped["autoStop"]["lastDecision"]["signal"] == "maxRuntime"
    reasons = [(e["to"], e["reason"]) for e in await harness.events(instance_id)]
    assert ("stopping", "MAX_RUNTIME") in reasons and ("stopped", "MAX_RUNTIME") in reasons
    stats = (await harness.http.get("/api/instances/auto-stop/stats")).json()
    assert stats["bySignal"]["maxRuntime"]["stopped"] == 1


async def test_both_needs_no_ping_and_idle_gpus(harness: Harness) -> None:
    both = {**GPU, "signal": "both"}
    pinged = await ready(harness, autoStop=both)
    quiet = await ready(harness, autoStop=both)
    for view in (pinged, quiet):
        utilization(harness, view, {"level": 0})
    await run_for(harness, 90 * MINUTE, step=5 * MINUTE, ping=pinged["instanceId"])
    assert (await harness.instance(pinged["instanceId"]))["status"] == "ready"
    stopped = await harness.until_status(quiet["instanceId"], "stopped")
    assert stopped["autoStop"]["lastDecision"]["signal"] == "both"


async def test_last_used_stays_the_default_and_delete_is_a_policy(harness: Harness) -> None:
    legacy = await ready(harness, autoStopMinutes=10)
    assert legacy["autoStop"]["signal"] == "lastUsed" and legacy["autoStop"]["gpu"] is None
    deleted = await ready(harness, autoStop={"idleMinutes": 10, "action": "delete"})
    assert deleted["autoStop"]["action"] == "delete"
    await run_for(harness, 11 * MINUTE)
    assert (await harness.until_status(legacy["instanceId"], "stopped"))["statusReason"] == "AUTO_STOP"
    gone = await harness.until_status(deleted["instanceId"], "terminated")
    assert gone["statusReason"] == "AUTO_STOP" and gone["autoStop"]["lastDecision"]["action"] == "delete"
    assert metrics_calls(harness) == 0  # lastUsed never costs a metrics call


async def test_patch_changes_the_policy_and_the_poller_follows(harness: Harness) -> None:
    view = await ready(harness, autoStopMinutes=30)
    instance_id = view["instanceId"]
    utilization(harness, view, {"level": 0})
    patched = await harness.http.patch(
        f"/api/instances/{instance_id}",
        json={"autoStop": {"signal": "gpu", "idleMinutes": 20}, "maxRuntimeMinutes": 600},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["autoStop"]["signal"] == "gpu" and body["autoStop"]["idleMinutes"] == 20
    assert body["maxRuntimeMinutes"] == 600 and body["autoStop"]["gpu"]["state"] == "pending"
    legacy = await harness.http.patch(f"/api/instances/{instance_id}", json={"autoStopMinutes": 25})
    assert legacy.json()["autoStop"]["idleMinutes"] == 25
    for bad in (
        {"autoStop": {"signal": "cpu"}},
        {"autoStop": {"gpuIdleBelowPercent": 0}},
        {"maxRuntimeMinutes": -1},
        {"x": 1},
    ):
        refused = await harness.http.patch(f"/api/instances/{instance_id}", json=bad)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "VALIDATION_ERROR", bad
    await run_for(harness, 27 * MINUTE)
    assert (await harness.until_status(instance_id, "stopped"))["autoStop"]["lastDecision"]["signal"] == "gpu"
    await harness.http.delete(f"/api/instances/{instance_id}")
    await harness.until_status(instance_id, "terminated")
    late = await harness.http.patch(f"/api/instances/{instance_id}", json={"autoStopMinutes": 5})
    assert late.status_code == 409


async def test_instances_due_together_are_spread_and_a_429_holds_the_poller(tmp_path: Path) -> None:
    async with Harness(tmp_path, gpu_poll_calls_per_minute=12) as h:  # two calls per ten seconds
        views = [await ready(h, autoStop={**GPU, "idleMinutes": 10}) for _ in range(6)]
        for view in views:
            utilization(h, view, {"level": 70})
        h.clock.advance(12 * MINUTE)  # every window is due at once
        await h.services.gpu_poller.step()  # schedules the six
        assert await h.services.gpu_poller.poll_due() == 2  # the bucket's burst
        h.clock.advance(10)
        assert await h.services.gpu_poller.poll_due() == 2
        h.clock.advance(20)
        assert await h.services.gpu_poller.poll_due() == 2
        assert {(await h.instance(v["instanceId"]))["autoStop"]["gpu"]["state"] for v in views} == {"busy"}

        h.faults(rate_limit_rate=1.0, retry_after_seconds=120, paths=["/gpu/instances"])
        await h.services.reconciler.tick(full=True)  # its listing is refused with Retry-After: 120
        h.faults(rate_limit_rate=0.0, paths=[])
        h.clock.advance(60 * MINUTE)
        before = metrics_calls(h)
        pause = await h.services.gpu_poller.step()
        assert 100 < pause <= 120 and metrics_calls(h) == before  # it waits out Novita's 429


async def test_idle_gpus_are_stopped_on_postgresql(tmp_path: Path) -> None:
    async with harness_on("postgres", tmp_path) as h:
        view = await ready(h, autoStop=GPU)
        utilization(h, view, {"level": 0})
        await run_for(h, 32 * MINUTE)
        stopped = await h.until_status(view["instanceId"], "stopped")
        assert stopped["autoStop"]["lastDecision"]["signal"] == "gpu"
