"""Injected faults (API paths only), the control API's reset and stats, and seeded reproducibility."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.emulator.conftest import API, KEY, Emulator, create_body


def test_rate_limit_answers_429_with_retry_after(emu: Emulator) -> None:
    emu.faults(rate_limit_rate=1.0, retry_after_seconds=7)
    response = emu.api.get("/gpu/instances")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json() == {
        "code": 429,
        "reason": "RATE_LIMIT_EXCEEDED",
        "message": "rate limit exceeded",
        "metadata": {},
    }
    assert emu.http.get("/_emulator/stats").status_code == 200  # control API is never faulted


def test_server_errors_are_500_or_503_in_the_envelope(emu: Emulator) -> None:
    emu.faults(server_error_rate=1.0)
    seen = {}
    for _ in range(12):
        response = emu.api.get("/clusters")
        seen[response.status_code] = response.json()["reason"]
    assert seen == {500: "UNKNOWN", 503: "SERVICE_UNAVAILABLE"}


def test_partial_rate_only_faults_some_requests(emu: Emulator) -> None:
    emu.faults(rate_limit_rate=0.5)
    codes = [emu.api.get("/clusters").status_code for _ in range(30)]
    assert 0 < codes.count(429) < 30 and set(codes) == {200, 429}


def test_latency_is_added_to_api_requests_only(emu: Emulator) -> None:
    emu.faults(latency_ms=300)
    started = time.perf_counter()
    assert emu.api.get("/clusters").status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    emu.http.get("/_emulator/faults")
    assert time.perf_counter() - started < 0.3


def test_drop_closes_the_connection_without_a_response(emu: Emulator) -> None:
    emu.faults(drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        emu.api.get("/gpu/instances")
    emu.faults(drop_rate=0.0)
    assert emu.api.get("/gpu/instances").status_code == 200


def test_create_failure_before_creates_nothing(emu: Emulator) -> None:
    emu.faults(create_failures=1, create_failure_mode="before")
    failed = emu.api.post("/gpu/instance/create", json=create_body(name="ambiguous"))
    assert failed.status_code == 500 and failed.json()["reason"] == "UNKNOWN"
    assert emu.api.get("/gpu/instances").json()["total"] == 0
    assert emu.http.get("/_emulator/faults").json()["create_failures"] == 0
    emu.create()


def test_create_failure_after_creates_the_instance_anyway(emu: Emulator) -> None:
    emu.faults(create_failures=2, create_failure_mode="after")
    refused = emu.api.post("/gpu/instance/create", json=create_body(gpuNum=0))
    assert refused.status_code == 400  # a refused create does not use up a failure
    for _ in range(2):
        assert emu.api.post("/gpu/instance/create", json=create_body(name="ambiguous")).status_code == 500
    found = emu.api.get("/gpu/instances", params={"name": "ambiguous"}).json()
    assert found["total"] == 2  # a client must look the name up before retrying
    emu.create()


def test_stuck_in_pulling(emu: Emulator) -> None:
    emu.faults(stuck_in_pulling=True)
    instance_id = emu.create()
    emu.advance(3600)
    assert emu.status(instance_id) == "pulling"


def test_faults_from_the_config_and_reset_restores_them(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(faults={"rate_limit_rate": 1.0})
    assert emu.api.get("/clusters").status_code == 429
    emu.faults(rate_limit_rate=0.0)
    assert emu.api.get("/clusters").status_code == 200
    emu.http.post("/_emulator/reset")
    assert emu.http.get("/_emulator/faults").json()["rate_limit_rate"] == 1.0


@pytest.mark.parametrize("changes", [{"rate_limit_rate": 2}, {"nonsense": 1}, {"create_failure_mode": "during"}])
def test_fault_updates_are_validated(emu: Emulator, changes: dict[str, object]) -> None:
    response = emu.http.put("/_emulator/faults", json=changes)
    assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM"


def test_reset_gives_a_fresh_world_with_the_same_seed(emu: Emulator) -> None:
    first = emu.create()
    emu.http.put("/_emulator/capacity", json={"clusterId": "1", "productId": "4090.16c62g", "gpus": 0})
    assert emu.http.post("/_emulator/reset").status_code == 200
    assert emu.api.get("/gpu/instances").json()["total"] == 0
    assert emu.create() == first  # same seed, same ids


def test_stats_count_api_requests_by_method_and_path(emu: Emulator) -> None:
    emu.api.get("/gpu/instances", params={"pageSize": 5})
    emu.api.get("/gpu/instances")
    instance_id = emu.create()
    emu.get(instance_id)
    emu.http.get(API + "/clusters")  # unauthorized, still a request Novita would have seen
    emu.http.get(f"/_instances/{instance_id}/8888/")  # not an API request
    assert emu.http.get("/_emulator/stats").json() == {
        "GET /clusters": 1,
        "GET /gpu/instance": 1,
        "GET /gpu/instances": 2,
        "POST /gpu/instance/create": 1,
    }
    emu.http.delete("/_emulator/stats")
    assert emu.http.get("/_emulator/stats").json() == {}


def test_same_seed_same_world(make_emulator: Callable[..., Emulator]) -> None:
    a, b, c = make_emulator(seed=7), make_emulator(seed=7), make_emulator(seed=8)
    ids = [[e.create(), e.create()] for e in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]
    assert a.get(ids[0][0])["connectComponentSSH"]["password"] == b.get(ids[1][0])["connectComponentSSH"]["password"]
    auths = [e.api.get("/repository/auths").json() for e in (a, b)]
    assert auths[0] == auths[1]


def test_faults_never_touch_instance_ports(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.advance(14)
    emu.faults(rate_limit_rate=1.0, drop_rate=0.0, latency_ms=0)
    assert emu.http.get(f"/_instances/{instance_id}/8888/").status_code == 200
    assert httpx.get(emu.url + API + "/clusters", headers={"Authorization": f"Bearer {KEY}"}).status_code == 429


def test_rate_faults_can_be_limited_to_some_endpoints(emu: Emulator) -> None:
    emu.faults(server_error_rate=1.0, paths=["/networkstorage/create", "/repository/auths"])
    assert emu.api.get("/clusters").status_code == 200
    assert emu.api.get("/repository/auths").status_code in (500, 503)
    created = emu.api.post("/networkstorage/create", json={"clusterId": "5", "storageName": "x", "storageSize": 10})
    assert created.status_code in (500, 503)
    assert emu.api.get("/networkstorages/list").json()["total"] == 0


def test_scripted_failure_before_does_nothing(emu: Emulator) -> None:
    emu.faults(failures=[{"path": "/repository/auth/save", "status": 503, "count": 2}])
    body = {"name": "hub", "username": "me", "password": "pw"}
    for _ in range(2):
        failed = emu.api.post("/repository/auth/save", json=body)
        assert failed.status_code == 503 and failed.json()["reason"] == "SERVICE_UNAVAILABLE"
    assert len(emu.api.get("/repository/auths").json()["data"]) == 2  # the seeded ones only
    assert emu.http.get("/_emulator/faults").json()["failures"] == []
    assert emu.api.post("/repository/auth/save", json=body).status_code == 200


def test_scripted_failure_after_acts_then_fails(emu: Emulator) -> None:
    emu.faults(failures=[{"path": "/networkstorage/create", "mode": "after", "reason": "GATEWAY", "message": "boom"}])
    refused = emu.api.post("/networkstorage/create", json={"clusterId": "6", "storageName": "x", "storageSize": 10})
    assert refused.json()["reason"] == "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT"  # its own refusal does not use it up
    ambiguous = emu.api.post("/networkstorage/create", json={"clusterId": "5", "storageName": "x", "storageSize": 10})
    assert ambiguous.status_code == 500
    assert ambiguous.json() == {"code": 500, "reason": "GATEWAY", "message": "boom", "metadata": {}}
    assert emu.api.get("/networkstorages/list").json()["total"] == 1  # created although the caller saw a 500


def test_scripted_failures_match_the_method_and_can_be_429(emu: Emulator) -> None:
    emu.faults(retry_after_seconds=3, failures=[{"path": "/image/prewarm", "method": "POST", "status": 429}])
    assert emu.api.get("/image/prewarm").status_code == 200  # a GET of the same path is not the scripted one
    limited = emu.api.post("/image/prewarm", json={"imageUrl": "a:b", "clusterId": "1"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert limited.json()["reason"] == "RATE_LIMIT_EXCEEDED"


def test_scripted_failures_only_hit_authenticated_requests(emu: Emulator) -> None:
    emu.faults(failures=[{"path": "/clusters"}])
    assert emu.http.get(API + "/clusters").status_code == 401
    assert emu.api.get("/clusters").status_code == 500
    assert emu.api.get("/clusters").status_code == 200


@pytest.mark.parametrize(
    "failures",
    [[{"path": ""}], [{"path": "/clusters", "status": 200}], [{"path": "/clusters", "mode": "later"}], [{"x": 1}]],
)
def test_scripted_failures_are_validated(emu: Emulator, failures: list[dict[str, object]]) -> None:
    response = emu.http.put("/_emulator/faults", json={"failures": failures})
    assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM"
