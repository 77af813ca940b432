"""With no configuration (the built-in emulator), a restart loses nothing: the emulated account is kept on
disk next to the store, so after SIGTERM or kill -9 every instance is where its timeline says."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.test_crash_safety import create, get, wait_for_status

pytestmark = pytest.mark.e2e

FAST = {"EMULATOR_SPEED": "20", "LEASE_SECONDS": "3", "RECONCILE_SLOW_SECONDS": "1"}


@pytest.mark.parametrize("how", ["kill9", "terminate"])
def test_instances_survive_a_restart_of_the_default_mode(processes: Processes, tmp_path: Path, how: str) -> None:
    store = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'novita-gpu.db'}"
    service = processes.service(store, env=FAST)
    ready = wait_for_status(service, create(service, "survives")["instanceId"], "ready", timeout=60)
    stopped_id = create(service, "stays-stopped")["instanceId"]
    wait_for_status(service, stopped_id, "ready", timeout=60)
    assert httpx.post(f"{service.url}/api/instances/{stopped_id}/stop", timeout=5).status_code == 202
    wait_for_status(service, stopped_id, "stopped", timeout=60)

    getattr(service, how)()
    assert (tmp_path / "data" / "novita-gpu.emulator.db").exists()
    service.start()
    httpx.post(f"{service.url}/api/instances/sync", json={}, timeout=30)  # a full pass against the emulator

    after = get(service, ready["instanceId"])
    assert after["status"] == "ready" and after["novitaInstanceId"] == ready["novitaInstanceId"]
    assert get(service, stopped_id)["status"] == "stopped"
    history = httpx.get(f"{service.url}/api/instances/{ready['instanceId']}/events", timeout=5).json()["events"]
    assert all(event["to"] != "terminated" for event in history), history
