"""kill -9 the service while a webhook is in flight: after a restart every event still arrives, at least
once and in order of first arrival, with the interrupted message redelivered under the same webhook-id.

Three processes: `novita-gpu emulator`, a receiver that hangs on requests until released
(webhook_receiver.py), and `novita-gpu serve` on a SQLite file that survives the kill.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import ManagedProcess, wait_for

pytestmark = pytest.mark.e2e

RECEIVER_SCRIPT = Path(__file__).with_name("webhook_receiver.py")
SETTLE_TIMEOUT = 60.0
SERVICE_ENV = {"WEBHOOK_ALLOW_LOOPBACK": "true", "WEBHOOK_TIMEOUT_SECONDS": "2", "LEASE_SECONDS": "3"}


class ReceiverProcess(ManagedProcess):
    """The receiver script, run with this venv's python; it hangs on every POST until `release()`."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__("receiver", log_dir)
        self.arrivals_path = log_dir / "arrivals.jsonl"

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(RECEIVER_SCRIPT),
            "--port",
            str(self.port),
            "--log",
            str(self.arrivals_path),
            "--hang",
        ]

    def ready_path(self) -> str:
        return "/health"

    def release(self) -> None:
        httpx.post(f"{self.url}/release", timeout=5.0).raise_for_status()

    def arrivals(self) -> list[dict[str, Any]]:
        if not self.arrivals_path.exists():
            return []
        return [json.loads(line) for line in self.arrivals_path.read_text().splitlines() if line]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(tmp_path / "receiver")
    process.start()
    try:
        yield process
    finally:
        process.kill9()


def test_killed_mid_delivery_every_event_still_arrives_in_order(
    processes: Processes, receiver: ReceiverProcess, sqlite_url: str
) -> None:
    emulator = processes.emulator(speed=5.0)
    service = processes.service(sqlite_url, emulator=emulator, env=SERVICE_ENV)
    response = httpx.post(
        f"{service.url}/api/instances",
        json={
            "name": "webhook-crash",
            "productName": "RTX 4090 24GB",
            "templateId": "pytorch-jupyter",
            "webhookUrl": f"{receiver.url}/webhook",
        },
        timeout=10.0,
    )
    assert response.status_code == 201, response.text
    instance_id = response.json()["instanceId"]

    # The first delivery reaches the receiver, which holds it: kill the service while it waits.
    [in_flight] = wait_for(lambda: receiver.arrivals() or None, timeout=SETTLE_TIMEOUT, what="the first webhook")
    assert in_flight["hung"] and in_flight["body"]["status"] == "creating"
    service.kill9()

    service.start()
    receiver.release()

    # Every status change the service recorded (a restart may skip one, e.g. straight to running)...
    def ready_events() -> list[dict[str, Any]] | None:
        answer = httpx.get(f"{service.url}/api/instances/{instance_id}/events", timeout=5.0).json()
        events: list[dict[str, Any]] = answer["events"]
        return events if events and events[-1]["to"] == "ready" else None

    events = wait_for(ready_events, timeout=SETTLE_TIMEOUT, what="the instance to be ready")
    expected = [(event["to"], hook["deliveryId"]) for event in events for hook in event["webhooks"]]
    assert [status for status, _ in expected] == [event["to"] for event in events]
    assert expected[0] == ("creating", in_flight["id"])

    # ...arrives at least once, in order of first arrival.
    def all_arrived() -> list[dict[str, Any]] | None:
        arrivals = receiver.arrivals()
        return arrivals if {a["id"] for a in arrivals} >= {msg_id for _, msg_id in expected} else None

    arrivals = wait_for(all_arrived, timeout=SETTLE_TIMEOUT, what="every webhook")
    assert list(dict.fromkeys((a["body"]["status"], a["id"]) for a in arrivals)) == expected
    assert all(a["body"]["instanceId"] == instance_id for a in arrivals)
    redelivered = [a for a in arrivals[1:] if a["id"] == in_flight["id"] and not a["hung"]]
    assert redelivered, "the delivery interrupted by the kill was sent again after the restart"
    assert redelivered[0]["body"] == in_flight["body"]
