"""The idle policy at its edges: who has an idle clock, when it started, and when it runs out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from novita_gpu.autostop.policy import idle_action, idle_since, is_idle, stops_at

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    status: str = "ready"
    upstream_status: str | None = "running"
    auto_stop_minutes: int = 10
    ready_at: datetime | None = T0
    failed_at: datetime | None = None
    last_used_at: datetime | None = None
    pending_action: str | None = None
    auto_stop_signal: str = "lastUsed"
    auto_stop_gpu_below: float = 5.0
    auto_stop_action: str = "stop"
    max_runtime_minutes: int = 0
    gpu_check: dict[str, Any] | None = None


def test_a_ready_instance_stops_its_idle_limit_after_becoming_ready() -> None:
    row = Row()
    assert idle_action(row) == "stop"
    assert stops_at(row) == T0 + timedelta(minutes=10)
    assert not is_idle(row, T0 + timedelta(minutes=10) - timedelta(microseconds=1))
    assert is_idle(row, T0 + timedelta(minutes=10))


def test_the_latest_use_restarts_the_clock_and_an_older_one_does_not() -> None:
    assert stops_at(Row(last_used_at=T0 + timedelta(minutes=7))) == T0 + timedelta(minutes=17)
    assert stops_at(Row(last_used_at=T0 - timedelta(days=1))) == T0 + timedelta(minutes=10)


def test_a_failed_instance_novita_still_runs_is_idle_from_its_failure() -> None:
    failed = Row(status="failed", ready_at=None, failed_at=T0 + timedelta(minutes=3))
    assert idle_since(failed) == T0 + timedelta(minutes=3)
    assert stops_at(failed) == T0 + timedelta(minutes=13)
    touched = replace(failed, last_used_at=T0 + timedelta(minutes=5))
    assert stops_at(touched) == T0 + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("upstream", "action"),
    [
        ("running", "stop"),
        ("pulling", "delete"),  # Novita bills from the pull on, and cannot stop a booting instance
        ("starting", "delete"),
        ("toCreate", "delete"),
        ("toStop", None),
        ("exited", None),
        ("removed", None),
        (None, None),  # never created upstream
        ("unknownState", None),
    ],
)
def test_what_ends_a_failed_instance_depends_on_what_novita_holds(upstream: str | None, action: str | None) -> None:
    failed = Row(status="failed", upstream_status=upstream, ready_at=None, failed_at=T0)
    assert idle_action(failed) == action
    assert stops_at(failed) == (T0 + timedelta(minutes=10) if action else None)


@pytest.mark.parametrize(
    "status", ["creating", "starting", "running", "health_checking", "stopping", "stopped", "terminating", "terminated"]
)
def test_no_other_status_is_ever_idle(status: str) -> None:
    row = Row(status=status, failed_at=T0, last_used_at=T0)
    assert stops_at(row) is None
    assert not is_idle(row, T0 + timedelta(days=365))


def test_zero_minutes_or_a_pending_action_mean_never() -> None:
    assert stops_at(Row(auto_stop_minutes=0)) is None
    assert stops_at(Row(pending_action="stop")) is None
    assert stops_at(Row(status="failed", failed_at=T0, auto_stop_minutes=0)) is None


def test_no_mark_at_all_means_no_clock() -> None:
    assert stops_at(Row(status="failed", ready_at=None, failed_at=None)) is None
    assert stops_at(Row(ready_at=None)) is None
