"""SIGTERM is a graceful stop: the replica claims nothing more, lets its upstream calls in flight finish,
releases its leases and exits 0, so the other replica carries on at once instead of after LEASE_SECONDS."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import wait_for

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 60  # what the other replica would wait out if the leases were not released
CREATE_DELAY = 3.0  # Novita takes this long to answer each create


def test_sigterm_finishes_a_slow_create_and_hands_over_at_once(postgres_url: str, processes: Processes) -> None:
    emulator = processes.emulator(speed=10.0)
    env = {"LEASE_SECONDS": str(LEASE_SECONDS), "NOVITA_TIMEOUT_SECONDS": "10", "SHUTDOWN_GRACE_SECONDS": "10"}
    leaving = processes.service(postgres_url, emulator=emulator, env=env, label="leaving")
    staying = processes.service(postgres_url, emulator=emulator, env=env, label="staying")
    httpx.put(f"{emulator.url}/_emulator/faults", json={"create_delay_seconds": CREATE_DELAY}).raise_for_status()

    created = httpx.post(
        f"{leaving.url}/api/instances",
        json={"name": "handed-over", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    instance_id = created.json()["instanceId"]
    # The leaving replica has sent the create (the emulator holds it) and waits for Novita's answer.
    wait_for(lambda: emulator.upstream_instances() or None, timeout=10, what="the create to reach Novita")

    signalled = time.monotonic()
    leaving.terminate()
    # uvicorn exits through the signal it caught once shutdown is complete (-15), as systemd expects.
    assert leaving._proc is not None and leaving._proc.returncode in (0, -15), leaving.log_tail()
    assert time.monotonic() - signalled < 10
    assert '"event":"service_stopped"' in leaving.stdout_path.read_text()

    def ready() -> dict[str, object] | None:
        view: dict[str, object] = httpx.get(f"{staying.url}/api/instances/{instance_id}", timeout=5).json()
        return view if view["status"] == "ready" else None

    view = wait_for(ready, timeout=LEASE_SECONDS / 2, what="the staying replica to bring it to ready")
    assert [u["id"] for u in emulator.upstream_instances()] == [view["novitaInstanceId"]]
    assert "worker_stop_timed_out" not in leaving.stdout_path.read_text()
