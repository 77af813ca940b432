"""The monitoring endpoint under /openapi/v1: utilization set through the control API, reported on a
15-second grid, a minute late, only while the instance runs; Novita's lenient parameters; faults, auth,
stats; and schedules kept in the state file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator import validation as v
from novita_gpu.emulator.state_file import StateFile
from novita_gpu.emulator.utilization import metrics_query
from novita_gpu.emulator.world import World
from novita_gpu.kit.clock import ManualClock
from tests.emulator.conftest import KEY, Emulator, create_body, ok_json

METRICS = "/openapi/v1/metrics/gpu/instance"


def metrics(emu: Emulator, instance_id: str, **params: Any) -> dict[str, Any]:
    return ok_json(
        emu.http.get(METRICS, params={"instanceId": instance_id, **params}, headers={"Authorization": f"Bearer {KEY}"})
    )


def gpu(body: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["timestamp"], p["value"]) for p in body["gpuUtilization"]["avg"]]


def set_level(emu: Emulator, instance_id: str, body: dict[str, Any]) -> httpx.Response:
    return emu.http.put(f"/_emulator/instances/{instance_id}/utilization", json=body)


def running(emu: Emulator, **overrides: Any) -> str:
    instance_id = emu.create(**overrides)
    emu.advance(10)
    assert emu.status(instance_id) == "running"
    return instance_id


def test_a_level_is_reported_on_the_grid_a_minute_late_and_only_while_running(emu: Emulator) -> None:
    instance_id = emu.create(gpuNum=2)
    assert set_level(emu, instance_id, {"level": 87.5}).status_code == 200
    started = emu.clock.now().timestamp()
    emu.advance(10)  # running from here on
    assert gpu(metrics(emu, instance_id)) == []  # the last 60 s, but nothing is older than a minute yet
    emu.advance(120)
    now = int(emu.clock.now().timestamp())
    body = metrics(emu, instance_id, startTime=int(started), endTime=now)
    points = gpu(body)
    assert points and all(value == 87.5 for _, value in points)
    assert all(t % 15 == 0 for t, _ in points)
    assert points[0][0] >= started + 10  # nothing while it was still pulling its image
    assert points[-1][0] <= now - 60  # Novita's delay
    assert [g["gpuId"] for g in body["gpuUtilization"]["gpuIds"]] == ["0", "1"]
    assert len(body["cpuUtilization"]) == len(body["memUtilization"]) == len(body["rootDiskUtilization"]) == len(points)
    assert body["gpuMemUtilization"]["avg"]

    emu.action("stop", instance_id)
    emu.advance(600)
    assert gpu(metrics(emu, instance_id)) == []  # stopped: no new samples
    later = gpu(metrics(emu, instance_id, startTime=int(started), endTime=now))
    assert later[: len(points)] == points  # the past stays (and its last minute has come in since)


def test_a_schedule_and_no_samples(emu: Emulator) -> None:
    instance_id = running(emu)
    start = int(emu.clock.now().timestamp())
    answer = set_level(
        emu,
        instance_id,
        {
            "schedule": [
                {"afterSeconds": 0, "level": 90},
                {"afterSeconds": 300, "level": 2},
                {"afterSeconds": 600, "level": None},
            ]
        },
    )
    assert answer.json()["levelNow"] == 90
    emu.advance(1000)
    points = gpu(metrics(emu, instance_id, startTime=start, endTime=start + 900, interval=60))
    assert {v for t, v in points if t < start + 300} == {90}
    assert {v for t, v in points if start + 300 <= t < start + 600} == {2}
    assert not [t for t, _ in points if t >= start + 600]  # null: the agent reports nothing
    got = emu.http.get(f"/_emulator/instances/{instance_id}/utilization").json()
    assert [s["level"] for s in got["steps"]] == [90, 2, None] and got["levelNow"] is None


def test_an_instance_nobody_set_reports_idle_gpus(emu: Emulator) -> None:
    instance_id = running(emu)
    emu.advance(120)
    now = int(emu.clock.now().timestamp())
    assert {v for _, v in gpu(metrics(emu, instance_id, startTime=now - 120, endTime=now))} == {0}


def test_bad_control_requests_and_unknown_instances(emu: Emulator) -> None:
    instance_id = emu.create()
    for body in (
        {},
        {"level": 101},
        {"level": "high"},
        {"level": 1, "schedule": []},
        {"schedule": [{"level": 1, "x": 2}]},
    ):
        response = set_level(emu, instance_id, body)
        assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM", body
    assert set_level(emu, "0000000000000000", {"level": 5}).status_code == 404
    missing = emu.http.get(
        METRICS, params={"instanceId": "0000000000000000"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert missing.status_code == 400 and missing.json()["reason"] == "RESOURCE_NOT_FOUND"
    no_id = emu.http.get(METRICS, headers={"Authorization": f"Bearer {KEY}"})
    assert no_id.status_code == 400 and no_id.json()["reason"] == "VALIDATOR_PARAM"


def test_out_of_range_parameters_take_novitas_defaults() -> None:
    now = 1_700_000_000.0
    default = metrics_query({}, now)
    assert (default.start, default.end, default.interval) == (int(now) - 60, int(now), 15)
    for params in (
        {"startTime": "yesterday"},
        {"startTime": str(int(now) + 5)},  # after the end
        {"startTime": str(int(now) - 3 * 86400)},  # longer than a day
        {"interval": "5"},
        {"interval": "-30"},
    ):
        assert metrics_query(params, now) == default, params
    assert metrics_query({"startTime": str(int(now) - 600), "interval": "60"}, now).interval == 60


def test_faults_auth_and_stats_cover_the_metrics_path(emu: Emulator) -> None:
    instance_id = running(emu)
    assert emu.http.get(METRICS, params={"instanceId": instance_id}).status_code == 401
    wrong = emu.api.get("/metrics/gpu/instance", params={"instanceId": instance_id})  # not under /gpu-instance
    assert wrong.status_code == 404
    emu.faults(failures=[{"path": "/metrics/gpu/instance", "status": 503, "count": 1}])
    failed = emu.http.get(METRICS, params={"instanceId": instance_id}, headers={"Authorization": f"Bearer {KEY}"})
    assert failed.status_code == 503 and failed.json()["reason"] == "SERVICE_UNAVAILABLE"
    metrics(emu, instance_id)
    emu.faults(rate_limit_rate=1.0, paths=["/metrics/gpu/instance"])
    limited = emu.http.get(METRICS, params={"instanceId": instance_id}, headers={"Authorization": f"Bearer {KEY}"})
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert emu.api.get("/clusters").status_code == 200  # only the metrics path is limited
    assert emu.http.get("/_emulator/stats").json()["GET /metrics/gpu/instance"] == 5


def test_schedules_are_kept_in_the_state_file(tmp_path: Path) -> None:
    clock = ManualClock()
    first = World(EmulatorConfig(), clock, StateFile(tmp_path / "emu.db"))
    instance = first.create(v.create_request(create_body(), {a.id for a in first.catalog.registry_auths}))
    first.set_utilization(
        instance.id, {"schedule": [{"afterSeconds": 0, "level": 40}, {"afterSeconds": 100, "level": 3}]}
    )
    clock.advance(200)
    second = World(EmulatorConfig(), clock, StateFile(tmp_path / "emu.db"))
    assert second.utilization(instance.id)["levelNow"] == 3
    second.reset()
    assert World(EmulatorConfig(), clock, StateFile(tmp_path / "emu.db")).all_instances() == []
