"""Two replicas of the service on one PostgreSQL database and one emulator: they share the work by leases,
so every instance gets ready whichever replica is asked, and none is created twice upstream."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

INSTANCES = 10
READY_TIMEOUT = 60.0


def ready_list(replica: ServiceProcess) -> list[dict[str, Any]] | None:
    """The replica's list when it shows all the instances ready, else None."""
    body = httpx.get(f"{replica.url}/api/instances", timeout=5.0).json()
    instances: list[dict[str, Any]] = body["instances"]
    assert not [i for i in instances if i["status"] == "failed"], instances
    if len(instances) == INSTANCES and all(i["status"] == "ready" for i in instances):
        return instances
    return None


def test_two_replicas_share_one_store_without_duplicate_upstream_instances(
    postgres_url: str, processes: Processes
) -> None:
    emulator = processes.emulator(speed=5.0)
    replicas = [processes.service(postgres_url, emulator=emulator, label=f"replica-{n}") for n in range(2)]

    created: dict[str, str] = {}
    for n in range(INSTANCES):
        replica = replicas[n % 2]
        response = httpx.post(
            f"{replica.url}/api/instances",
            json={"name": f"shared-{n}", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"},
            timeout=10.0,
        )
        assert response.status_code == 201, (replica.label, response.text)
        created[response.json()["instanceId"]] = f"shared-{n}"

    views = [
        wait_for(partial(ready_list, r), timeout=READY_TIMEOUT, what=f"{r.label} to list all ready") for r in replicas
    ]

    for view in views:
        assert {i["instanceId"]: i["name"] for i in view} == created
    novita_ids = {i["name"]: i["novitaInstanceId"] for i in views[0]}
    assert novita_ids == {i["name"]: i["novitaInstanceId"] for i in views[1]}

    upstream = emulator.upstream_instances()
    assert len(upstream) == INSTANCES, upstream
    by_id = {u["id"]: u for u in upstream}
    assert set(by_id) == set(novita_ids.values())
    for name, novita_id in novita_ids.items():
        assert str(by_id[novita_id]["name"]).startswith(f"{name}-")
        assert by_id[novita_id]["status"] == "running"
