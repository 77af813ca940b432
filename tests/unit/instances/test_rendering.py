"""Event bodies (instances/rendering.py): the stream rebuilds an event stored without its body (before
migration 0004) in the very shape a stored one has."""

from __future__ import annotations

from datetime import UTC, datetime

from novita_gpu.instances.lifecycle import Status
from novita_gpu.instances.rendering import event_payload, rebuilt_event_payload
from novita_gpu.kit.tables import Instance


def test_a_rebuilt_event_body_is_the_body_the_change_stored() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = Instance(
        id="inst_0123456789abcdef0123",
        name="web",
        status=Status.RUNNING,
        status_reason=None,
        status_message="Novita reports the instance running.",
        upstream_status="running",
        novita_instance_id="nv-1",
        product_name="RTX 4090 24GB",
        region="US-CA-06",
        price_per_hour=0.35,
        connection_details={"ssh": {"host": "h", "port": 22}},
        health_check=None,
        labels={"team": "ml"},
        auto_stop_decision=None,
    )
    stored = event_payload(row, "starting", at)
    rebuilt = rebuilt_event_payload(row, "running", "starting", at, row.status_reason, row.status_message)
    assert rebuilt == stored
    assert list(rebuilt) == list(stored) and list(rebuilt["data"]) == list(stored["data"])
    assert stored["event"] == "instance.running" and stored["timestamp"] == "2026-01-02T03:04:05Z"
