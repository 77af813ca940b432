"""With no configuration (the built-in emulator), a restart loses nothing: the emulated account is kept on
disk next to the store, so after SIGTERM or kill -9 every instance is where its timeline says."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import ServiceProcess
from tests.e2e.test_crash_safety import create, get, wait_for_status

pytestmark = pytest.mark.e2e

FAST = {"EMULATOR_SPEED": "20", "LEASE_SECONDS": "3", "RECONCILE_SLOW_SECONDS": "1"}


def one_ready_one_stopped(processes: Processes, tmp_path: Path) -> tuple[ServiceProcess, dict[str, Any], str]:
    """The default mode (no configuration) serving two instances: one ready (its view), one that was ready
    and is stopped (its id)."""
    store = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'novita-gpu.db'}"
    service = processes.service(store, env=FAST)
    ready = wait_for_status(service, create(service, "kept")["instanceId"], "ready", timeout=60)
    stopped_id = create(service, "paused")["instanceId"]
    wait_for_status(service, stopped_id, "ready", timeout=60)
    assert httpx.post(f"{service.url}/api/instances/{stopped_id}/stop", timeout=5).status_code == 202
    wait_for_status(service, stopped_id, "stopped", timeout=60)
    return service, ready, stopped_id


def _http_urls(instance: dict[str, Any]) -> list[str]:
    ports = (instance.get("connectionDetails") or {}).get("ports", [])
    return [p["endpoint"] for p in ports if p.get("type") == "http" and p.get("endpoint")]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _start(service: ServiceProcess, instance_id: str) -> None:
    assert httpx.post(f"{service.url}/api/instances/{instance_id}/start", timeout=5).status_code == 202


@pytest.mark.parametrize("emulator_port_taken", [False, True], ids=["same-port", "port-taken"])
def test_urls_answer_after_restarts(processes: Processes, tmp_path: Path, emulator_port_taken: bool) -> None:
    """Two restarts (kill -9, then SIGTERM) of the default mode lose nothing: the ready instance is the same
    Novita instance, still ready, the stopped one still stopped. Then a start and a create both reach ready,
    and every ready instance's URLs answer, whether the emulator got its old port back or not."""
    service, kept, paused_id = one_ready_one_stopped(processes, tmp_path)
    first_urls = _http_urls(kept)
    assert first_urls and all(_answers(url) for url in first_urls)

    with contextlib.ExitStack() as held:
        for how in ("kill9", "terminate"):
            getattr(service, how)()
            if emulator_port_taken:  # someone else took the emulator's port while the service was down
                old = _http_urls(kept)[0]
                blocker = held.enter_context(socket.socket())
                with contextlib.suppress(OSError):
                    blocker.bind(("127.0.0.1", httpx.URL(old).port or 0))
                    blocker.listen()
            assert (tmp_path / "data" / "novita-gpu.emulator.db").exists()
            service.start()
            httpx.post(f"{service.url}/api/instances/sync", json={}, timeout=30)  # a full pass against the emulator
            after = wait_for_status(service, kept["instanceId"], "ready", timeout=60)
            assert after["novitaInstanceId"] == kept["novitaInstanceId"]
            kept = after
            assert get(service, paused_id)["status"] == "stopped"
            events = httpx.get(f"{service.url}/api/instances/{kept['instanceId']}/events", timeout=5).json()["events"]
            assert all(event["to"] != "terminated" for event in events), events

        _start(service, paused_id)
        fresh_id = create(service, "fresh")["instanceId"]
        for instance_id in (paused_id, fresh_id):
            wait_for_status(service, instance_id, "ready", timeout=60)

        ready = httpx.get(f"{service.url}/api/instances", params={"status": "ready"}, timeout=5).json()["instances"]
        assert {i["instanceId"] for i in ready} == {kept["instanceId"], paused_id, fresh_id}
        for instance in ready:
            urls = _http_urls(instance)
            assert urls, instance
            assert all(_answers(url) for url in urls), (instance["name"], urls)
