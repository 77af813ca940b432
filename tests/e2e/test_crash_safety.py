"""kill -9 the service at awkward moments, restart it on the same SQLite file, and check that the instance
still gets where it was going, with exactly one upstream instance (the emulator runs as its own process, so
it keeps the truth while the service is dead)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import EmulatorProcess, ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

EMULATOR_SPEED = 2.0
SETTLE_TIMEOUT = 60.0
# A killed process cannot release its row leases; a short lease lets the restarted one take over quickly.
SERVICE_ENV = {"LEASE_SECONDS": "3"}


def create(service: ServiceProcess, name: str) -> dict[str, Any]:
    response = httpx.post(
        f"{service.url}/api/instances",
        json={"name": name, "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"},
        timeout=10.0,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get(service: ServiceProcess, instance_id: str) -> dict[str, Any]:
    response = httpx.get(f"{service.url}/api/instances/{instance_id}", timeout=5.0)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_status(service: ServiceProcess, instance_id: str, status: str, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        instance = get(service, instance_id)
        assert instance["status"] != "failed" or status == "failed", instance
        return instance if instance["status"] == status else None

    return wait_for(reached, timeout=timeout, what=f"instance {instance_id} to be {status}")


def only_upstream_instance(emulator: EmulatorProcess, name: str) -> dict[str, Any]:
    """The emulator holds exactly one instance under our upstream name `<name>-<8 hex>`."""
    ours = [i for i in emulator.upstream_instances() if str(i["name"]).startswith(f"{name}-")]
    assert len(ours) == 1, ours
    return ours[0]


@pytest.fixture
def emulator(processes: Processes) -> EmulatorProcess:
    return processes.emulator(speed=EMULATOR_SPEED)


@pytest.fixture
def service(processes: Processes, emulator: EmulatorProcess, sqlite_url: str) -> ServiceProcess:
    return processes.service(sqlite_url, emulator=emulator, env=SERVICE_ENV)


def test_killed_while_creating_resumes_to_ready_with_one_upstream_instance(
    service: ServiceProcess, emulator: EmulatorProcess
) -> None:
    created = create(service, "crash-creating")
    assert created["status"] == "creating"
    killed_then_ready_on_one_upstream_instance(service, emulator, created["instanceId"], "crash-creating")


def test_killed_while_health_checking_resumes_to_ready_with_one_upstream_instance(
    service: ServiceProcess, emulator: EmulatorProcess
) -> None:
    created = create(service, "crash-probing")
    wait_for_status(service, created["instanceId"], "health_checking", SETTLE_TIMEOUT)
    killed_then_ready_on_one_upstream_instance(service, emulator, created["instanceId"], "crash-probing")


def killed_then_ready_on_one_upstream_instance(
    service: ServiceProcess, emulator: EmulatorProcess, instance_id: str, name: str
) -> None:
    """kill -9 the service and start it again: the instance reaches ready, on one running upstream instance."""
    service.kill9()

    service.start()
    ready = wait_for_status(service, instance_id, "ready", SETTLE_TIMEOUT)

    upstream = only_upstream_instance(emulator, name)
    assert upstream["status"] == "running"
    assert upstream["id"] == ready["novitaInstanceId"]


def test_stop_accepted_then_killed_still_stops_upstream(service: ServiceProcess, emulator: EmulatorProcess) -> None:
    created = create(service, "crash-stopping")
    wait_for_status(service, created["instanceId"], "ready", SETTLE_TIMEOUT)
    response = httpx.post(f"{service.url}/api/instances/{created['instanceId']}/stop", timeout=10.0)
    assert response.status_code == 202, response.text
    service.kill9()

    service.start()
    stopped = wait_for_status(service, created["instanceId"], "stopped", SETTLE_TIMEOUT)

    assert stopped["statusReason"] == "USER"
    upstream = only_upstream_instance(emulator, "crash-stopping")
    assert upstream["status"] == "exited"
    assert upstream["id"] == stopped["novitaInstanceId"]


def test_killed_during_a_volume_create_leaves_exactly_one_storage(
    processes: Processes, emulator: EmulatorProcess, sqlite_url: str
) -> None:
    """kill -9 while Novita is making the storage (the create is slow): after the restart the volume is
    available on one storage, the first create's if it landed, else one sent again once that call has
    surely ended (kit/in_doubt.py; tests/integration/volumes covers a create that lands unanswered)."""
    # A short call timeout bounds how long the restarted service looks for a create in doubt before sending it again.
    service = processes.service(
        sqlite_url,
        emulator=emulator,
        env={**SERVICE_ENV, "NOVITA_TIMEOUT_SECONDS": "3", "NOVITA_RETRY_DEADLINE_SECONDS": "2"},
    )
    slow = httpx.put(f"{emulator.url}/_emulator/faults", json={"latency_ms": 1500, "paths": ["/networkstorage/create"]})
    assert slow.status_code == 200, slow.text
    created = httpx.post(
        f"{service.url}/api/volumes", json={"name": "crash-volume", "region": "US-TX-04", "sizeGb": 10}, timeout=10.0
    )
    assert created.status_code == 201, created.text
    sent = "POST /networkstorage/create"
    wait_for(lambda: httpx.get(f"{emulator.url}/_emulator/stats").json().get(sent), timeout=30, what="the create sent")
    service.kill9()  # (the emulator drops a create whose caller is gone: the restarted service sends it again)
    httpx.put(f"{emulator.url}/_emulator/faults", json={"latency_ms": 0}).raise_for_status()

    service.start()

    def available() -> dict[str, Any] | None:
        volume: dict[str, Any] = httpx.get(f"{service.url}/api/volumes/crash-volume", timeout=5.0).json()
        assert volume["status"] in ("creating", "available"), volume
        return volume if volume["status"] == "available" else None

    volume = wait_for(available, timeout=SETTLE_TIMEOUT, what="the volume to be available")
    listed = httpx.get(
        f"{emulator.api_base_url}/v1/networkstorages/list",
        params={"pageNo": 1, "pageSize": 100},
        headers={"Authorization": "Bearer e2e-test-key"},
        timeout=5.0,
    ).json()["data"]
    ours = [s for s in listed if str(s["storageName"]).startswith("crash-volume-")]
    assert [s["storageId"] for s in ours] == [volume["storageId"]]


@pytest.mark.parametrize("path", ["migrate", "recreate"])
def test_killed_during_a_spot_recovery_resumes_it_exactly_once(
    processes: Processes, emulator: EmulatorProcess, sqlite_url: str, path: str
) -> None:
    """kill -9 while the recovery's call (the migrate, or the replacement's create) is at Novita: after the
    restart the record is ready again, recovered once, with one Novita instance running."""
    service = processes.service(
        sqlite_url,
        emulator=emulator,
        env={**SERVICE_ENV, "NOVITA_TIMEOUT_SECONDS": "3", "NOVITA_RETRY_DEADLINE_SECONDS": "2"},
    )
    httpx.put(f"{emulator.url}/_emulator/spot", json={"noticeSeconds": 2}).raise_for_status()
    response = httpx.post(
        f"{service.url}/api/instances",
        json={
            "name": f"spot-{path}",
            "productName": "RTX 4090 24GB",
            "templateId": "pytorch-jupyter",
            "billingMode": "spot",
            "recovery": {"onReclaim": path},
        },
        timeout=10.0,
    )
    assert response.status_code == 201, response.text
    instance_id = response.json()["instanceId"]
    ready = wait_for_status(service, instance_id, "ready", SETTLE_TIMEOUT)
    endpoint = "/gpu/instance/migrate" if path == "migrate" else "/gpu/instance/create"
    sent = f"POST {endpoint}"
    before = httpx.get(f"{emulator.url}/_emulator/stats").json().get(sent, 0)
    httpx.put(f"{emulator.url}/_emulator/faults", json={"latency_ms": 1500, "paths": [endpoint]}).raise_for_status()
    httpx.post(f"{emulator.url}/_emulator/reclaim", json={"ids": [ready["novitaInstanceId"]]}).raise_for_status()
    wait_for(
        lambda: httpx.get(f"{emulator.url}/_emulator/stats").json().get(sent, 0) > before,
        timeout=SETTLE_TIMEOUT,
        what="the recovery's call sent",
    )
    service.kill9()
    httpx.put(f"{emulator.url}/_emulator/faults", json={"latency_ms": 0}).raise_for_status()
    service.start()

    def recovered() -> dict[str, Any] | None:
        view = get(service, instance_id)
        assert view["status"] != "failed", view
        done = view["status"] == "ready" and view["recovery"]["attempt"] == 1 and not view["recovery"]["inProgress"]
        return view if done else None

    back = wait_for(recovered, timeout=SETTLE_TIMEOUT * 2, what="the record ready again")
    assert [s["outcome"] for s in back["recovery"]["history"]] == ["recovered"]
    assert httpx.get(f"{emulator.url}/_emulator/stats").json().get(sent, 0) == before + 1

    def one_running() -> list[dict[str, Any]] | None:
        ours = [
            i
            for i in emulator.upstream_instances()
            if str(i["name"]).startswith(f"spot-{path}-") and i["status"] not in ("removed", "removing", "toRemove")
        ]
        return ours if len(ours) == 1 else None

    [live] = wait_for(one_running, timeout=SETTLE_TIMEOUT, what="one Novita instance left")
    assert live["id"] == back["novitaInstanceId"] and live["status"] == "running"


def test_killed_while_a_pool_refills_and_claims_land_hands_each_member_out_once(
    processes: Processes, emulator: EmulatorProcess, sqlite_url: str
) -> None:
    """kill -9 while a pool warms its members and claims are answered: after the restart, every claim holds
    its own Novita instance, the pool meets its targets again, and Novita holds nothing nobody owns."""
    service = processes.service(sqlite_url, emulator=emulator, env={**SERVICE_ENV, "POOL_CHECK_SECONDS": "0.5"})
    body = {"name": "warm", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
    made = httpx.post(f"{service.url}/api/pools", json={**body, "minReady": 2, "minStopped": 1, "max": 6}, timeout=10)
    assert made.status_code == 201, made.text

    def pool() -> dict[str, Any]:
        answer = httpx.get(f"{service.url}/api/pools/warm", timeout=5.0)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    wait_for(lambda: pool()["members"]["ready"] or None, timeout=SETTLE_TIMEOUT, what="a ready member")
    claims = []
    for n in range(3):  # one ready at once, then whatever is idle or cold, while the pool refills
        answer = httpx.post(f"{service.url}/api/pools/warm/claim", json={"name": f"job-{n}"}, timeout=10.0)
        assert answer.status_code == 201, answer.text
        claims.append(answer.json())
    service.kill9()

    service.start()
    held = [wait_for_status(service, c["instanceId"], "ready", SETTLE_TIMEOUT)["novitaInstanceId"] for c in claims]
    assert len(set(held)) == 3

    def refilled() -> dict[str, Any] | None:
        view = pool()
        wanted = {"ready": 2, "stopped": 1, "warming": 0, "claimed": 3, "total": 6}
        return view if view["members"] == wanted else None

    settled = wait_for(refilled, timeout=SETTLE_TIMEOUT, what="the pool to refill")
    assert settled["claims"]["lastHour"] == 3
    listed = httpx.get(f"{service.url}/api/instances?limit=100", timeout=5.0).json()["instances"]
    owned = {i["novitaInstanceId"] for i in listed if i["status"] not in ("terminated",)}
    live = {i["id"] for i in emulator.upstream_instances() if i["status"] not in ("removed", "removing", "toRemove")}
    assert live == owned and len(live) == 6
