"""Who is idle and when they stop. Pure functions over an instance's fields.

The idle clock starts when the instance becomes ready and restarts at every PUT /last-used; a starting,
stopping or stopped instance is never stopped for idleness, and 0 minutes means never.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from novita_gpu.instances.lifecycle import Status


class Idleable(Protocol):
    status: str
    auto_stop_minutes: int
    ready_at: datetime | None
    last_used_at: datetime | None
    pending_action: str | None


def stops_at(instance: Idleable) -> datetime | None:
    """When the instance becomes eligible for auto-stop, or None if it never will in its current state."""
    if instance.auto_stop_minutes <= 0 or instance.status != Status.READY or instance.pending_action:
        return None
    marks = [t for t in (instance.ready_at, instance.last_used_at) if t is not None]
    if not marks:
        return None
    return max(marks) + timedelta(minutes=instance.auto_stop_minutes)


def is_idle(instance: Idleable, now: datetime) -> bool:
    deadline = stops_at(instance)
    return deadline is not None and now >= deadline


def gpu_hours_saved(stopped_at: datetime, now: datetime, gpu_num: int) -> float:
    """GPU-hours not billed since an auto-stop (a lower bound: the instance might have been stopped later)."""
    return max(0.0, (now - stopped_at).total_seconds() / 3600.0) * gpu_num
