"""The GPU signal at its edges: what a window of samples says (never idle on missing data), which verdict
still counts, and which rule decides when several could."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from novita_gpu.autostop.gpu_poller import judge, sampling_interval
from novita_gpu.autostop.policy import GPU_VERDICT_FRESH, decide, stops_at
from novita_gpu.novita import MetricPoint

NOW = 1_800_000_000.0
T0 = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def samples(start: float, end: float, value: float = 1.0, every: int = 15) -> list[MetricPoint]:
    return [MetricPoint(timestamp=t, value=value) for t in range(int(start), int(end) + 1, every)]


def verdict(points: list[MetricPoint], window: int = 30) -> Any:
    return judge(points, now=NOW, window_minutes=window, threshold=5.0, interval=15, delay=60)


def test_a_whole_quiet_window_is_idle_with_its_figures() -> None:
    look = verdict(samples(NOW - 60 - 31 * 60, NOW - 60, value=2.0))
    assert look.state == "idle" and look.avg == 2.0 and look.peak == 2.0 and look.samples == 121


def test_one_busy_sample_makes_it_busy_and_says_when() -> None:
    points = samples(NOW - 60 - 31 * 60, NOW - 60)
    points[50] = MetricPoint(timestamp=points[50].timestamp, value=5.0)  # at the threshold is busy
    look = verdict(points)
    assert look.state == "busy" and look.busy_at == points[50].timestamp


def test_missing_data_is_never_idle() -> None:
    full = samples(NOW - 60 - 31 * 60, NOW - 60)
    assert verdict([]).reason.startswith("NO_SAMPLES")
    assert verdict(samples(NOW - 3600, NOW - 900)).reason.startswith("STALE")
    assert verdict(samples(NOW - 60 - 10 * 60, NOW - 60)).reason.startswith("PARTIAL")  # 10 of 30 minutes
    holed = [p for p in full if not NOW - 1200 < p.timestamp < NOW - 1000]
    assert verdict(holed).reason.startswith("GAPS")
    assert {verdict(p).state for p in ([], holed)} == {"unavailable"}


def test_longer_windows_are_asked_at_a_coarser_interval() -> None:
    assert [sampling_interval(m) for m in (5, 30, 60, 61, 120, 1440)] == [15, 15, 15, 30, 30, 360]


@dataclass(frozen=True)
class Row:
    status: str = "ready"
    upstream_status: str | None = "running"
    auto_stop_minutes: int = 30
    auto_stop_signal: str = "gpu"
    auto_stop_gpu_below: float = 5.0
    auto_stop_action: str = "stop"
    max_runtime_minutes: int = 0
    ready_at: datetime | None = T0
    failed_at: datetime | None = None
    last_used_at: datetime | None = None
    pending_action: str | None = None
    gpu_check: dict[str, Any] | None = None


def check(state: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "state": state,
        "checkedAt": at.isoformat(),
        "readyAt": T0.isoformat(),
        "windowMinutes": 30,
        "thresholdPercent": 5.0,
        **extra,
    }


def test_no_verdict_no_stop_and_a_fresh_idle_one_decides_at_once() -> None:
    late = T0 + timedelta(hours=5)
    assert decide(Row(), late) is None and stops_at(Row(), late) is None  # never on a guess
    seen = T0 + timedelta(minutes=31)
    idle = Row(gpu_check=check("idle", seen, avgPercent=1.0, maxPercent=2.0, samples=121))
    decision = decide(idle, seen)
    assert decision is not None and decision.decided_by == "gpu" and stops_at(idle, seen) == seen
    stale = seen + GPU_VERDICT_FRESH + timedelta(seconds=1)
    assert decide(idle, stale) is None and stops_at(idle, stale) is None


def test_a_verdict_of_another_run_or_policy_counts_for_nothing() -> None:
    seen = T0 + timedelta(minutes=31)
    idle = Row(gpu_check=check("idle", seen))
    assert decide(replace(idle, ready_at=T0 + timedelta(hours=1)), seen) is None
    assert decide(replace(idle, auto_stop_minutes=20), seen) is None
    assert decide(replace(idle, auto_stop_gpu_below=10.0), seen) is None


def test_unavailable_metrics_fall_back_to_last_used() -> None:
    row = Row(gpu_check=check("unavailable", T0 + timedelta(minutes=31), reason="NO_SAMPLES: none"))
    assert stops_at(row) == T0 + timedelta(minutes=30)
    decision = decide(row, T0 + timedelta(minutes=31))
    assert decision is not None and decision.decided_by == "lastUsed"
    assert decision.figures["fallbackReason"] == "NO_SAMPLES: none" and "unavailable" in decision.message()
    pinged = replace(row, last_used_at=T0 + timedelta(minutes=20))
    assert decide(pinged, T0 + timedelta(minutes=31)) is None


def test_both_waits_for_the_pings_to_go_quiet() -> None:
    seen = T0 + timedelta(minutes=31)
    both = Row(auto_stop_signal="both", gpu_check=check("idle", seen), last_used_at=T0 + timedelta(minutes=29))
    assert decide(both, seen) is None and stops_at(both, seen) == T0 + timedelta(minutes=59)
    quiet = replace(both, last_used_at=None)
    decision = decide(quiet, seen)
    assert decision is not None and decision.decided_by == "both"


def test_max_runtime_comes_first_whatever_the_activity() -> None:
    busy = Row(max_runtime_minutes=60, gpu_check=check("busy", T0 + timedelta(minutes=59)))
    assert stops_at(busy) == T0 + timedelta(minutes=60)
    assert decide(busy, T0 + timedelta(minutes=59)) is None
    decision = decide(busy, T0 + timedelta(minutes=60))
    assert decision is not None and decision.decided_by == "maxRuntime" and str(decision.reason) == "MAX_RUNTIME"
    assert decide(replace(busy, status="stopped"), T0 + timedelta(hours=2)) is None
