"""Emulated monitoring: each instance's GPU utilization over time, and Novita's metrics answer built from it.

A test (or a developer) sets an instance's level, or a schedule of levels, through the control API; the
metrics endpoint then answers what Novita's monitoring would: samples on a fixed grid, only for moments
the instance was running, and only up to about a minute ago (Novita's documented delay). Like an
instance's timeline, a schedule is a function of time, so moving the clock is all a test does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from novita_gpu.emulator.errors import invalid_param
from novita_gpu.emulator.instance import EmulatedInstance

UTILIZATION = "utilization"  # the state file's kind for schedules
DEFAULT_LEVEL = 0.0  # an instance nobody set a level for: GPUs idle [INF: a fresh instance runs nothing]
DEFAULT_WINDOW_SECONDS = 60  # Novita: startTime/endTime default to the last 60 s
DEFAULT_INTERVAL_SECONDS = 15  # Novita: interval > 15 s, default 15
MAX_WINDOW_SECONDS = 24 * 3600  # [INF] a longer window is out of range: Novita's defaults apply
MAX_SCHEDULE_STEPS = 1000


@dataclass
class Utilization:
    """Steps of (from unix seconds, percent or None); None means the monitoring agent reports nothing."""

    steps: list[tuple[float, float | None]] = field(default_factory=list)

    def level_at(self, at: float) -> float | None:
        level: float | None = DEFAULT_LEVEL
        for start, value in self.steps:
            if start > at:
                break
            level = value
        return level

    def replace_from(self, now: float, steps: list[tuple[float, float | None]]) -> None:
        """Keep what was in effect before `now` (past samples do not change), then `steps`."""
        self.steps = [s for s in self.steps if s[0] < now] + sorted(steps, key=lambda s: s[0])

    def json(self, instance_id: str, now: float) -> dict[str, Any]:
        return {
            "instanceId": instance_id,
            "levelNow": self.level_at(now),
            "steps": [{"at": at, "level": level} for at, level in self.steps],
        }

    def state(self, instance_id: str) -> dict[str, Any]:
        return {"id": instance_id, "steps": [[at, level] for at, level in self.steps]}

    @classmethod
    def from_state(cls, body: dict[str, Any]) -> Utilization:
        return cls([(float(at), None if level is None else float(level)) for at, level in body.get("steps", [])])


def _level(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid_param(f"{where} must be a number from 0 to 100, or null for no samples")
    if not 0 <= value <= 100:
        raise invalid_param(f"{where} must be from 0 to 100")
    return float(value)


def parse_utilization(body: dict[str, Any], now: float) -> list[tuple[float, float | None]]:
    """The steps a control request sets from `now` on: `{"level": x}`, or `{"schedule": [{"afterSeconds",
    "level"}, ...]}` with offsets from now (emulated seconds, as given: not divided by the speed)."""
    if ("level" in body) == ("schedule" in body):
        raise invalid_param("give either level or schedule")
    if "level" in body:
        return [(now, _level(body["level"], "level"))]
    schedule = body["schedule"]
    if not isinstance(schedule, list) or not 1 <= len(schedule) <= MAX_SCHEDULE_STEPS:
        raise invalid_param(f"schedule must be a list of 1-{MAX_SCHEDULE_STEPS} steps")
    steps: list[tuple[float, float | None]] = []
    for i, step in enumerate(schedule):
        if not isinstance(step, dict) or set(step) - {"afterSeconds", "level"} or "level" not in step:
            raise invalid_param(f"schedule[{i}] must be {{afterSeconds, level}}")
        after = step.get("afterSeconds", 0)
        if isinstance(after, bool) or not isinstance(after, int | float) or not 0 <= after < math.inf:
            raise invalid_param(f"schedule[{i}].afterSeconds must be a number >= 0")
        steps.append((now + float(after), _level(step["level"], f"schedule[{i}].level")))
    return steps


@dataclass(frozen=True)
class MetricsQuery:
    start: int
    end: int
    interval: int


def _query_int(params: dict[str, str], key: str) -> int | None:
    try:
        value = int(params.get(key, "").strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def metrics_query(params: dict[str, str], now: float) -> MetricsQuery:
    """Novita's parameters with its documented leniency: out-of-range or unreadable values take the
    defaults (the last 60 s, every 15 s) instead of an error."""
    end = _query_int(params, "endTime")
    if end is None or end == 0:
        end = int(now)
    start = _query_int(params, "startTime")
    if start is None or start == 0 or start >= end or end - start > MAX_WINDOW_SECONDS:
        start = end - DEFAULT_WINDOW_SECONDS
    interval = _query_int(params, "interval")
    if interval is None or interval < DEFAULT_INTERVAL_SECONDS:  # [INF] "> 15, default 15": 15 itself is taken
        interval = DEFAULT_INTERVAL_SECONDS
    return MetricsQuery(start, end, interval)


def _point(at: int, value: float) -> dict[str, Any]:
    return {"timestamp": at, "value": round(value, 2)}


def metrics_answer(
    instance: EmulatedInstance, utilization: Utilization | None, query: MetricsQuery, now: float, delay: float
) -> dict[str, Any]:
    """Samples on the interval's grid within the query, while the instance ran and up to `delay` ago."""
    schedule = utilization or Utilization()
    gpu: list[dict[str, Any]] = []
    cpu: list[dict[str, Any]] = []
    gpu_mem: list[dict[str, Any]] = []
    first = -(-query.start // query.interval) * query.interval  # the first grid point in the window
    for at in range(first, min(query.end, math.floor(now - delay)) + 1, query.interval):
        level = schedule.level_at(at)
        if level is None or instance.status_at(at) != "running" or not instance.visible_at(at):
            continue
        gpu.append(_point(at, level))
        cpu.append(_point(at, min(100.0, 5 + level * 0.3)))
        gpu_mem.append(_point(at, min(100.0, 10 + level * 0.6)))
    steady = [_point(p["timestamp"], 35.0) for p in gpu]
    disk = [_point(p["timestamp"], 12.0) for p in gpu]
    gpus = max(1, instance.gpu_num)
    return {
        "cpuUtilization": cpu,
        "memUtilization": steady,
        "rootDiskUtilization": disk,
        "gpuUtilization": {"avg": gpu, "gpuIds": [{"gpuId": str(i), "items": gpu} for i in range(gpus)]},
        "gpuMemUtilization": {"avg": gpu_mem, "gpuIds": [{"gpuId": str(i), "items": gpu_mem} for i in range(gpus)]},
    }
