"""Who is idle and when they stop. Pure functions over an instance's fields.

The idle clock starts when the instance becomes ready and restarts at every PUT /last-used; a starting,
stopping or stopped instance is never stopped for idleness, and 0 minutes means never.

A failed instance that Novita still runs (its ports never answered, say) bills like a ready one, and
nobody is using it through us: its idle clock starts when it failed, so it is stopped after the same
idle limit unless someone marks it used (to look into it, say). Novita can stop only a running
instance, so one that failed while still booting is left alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from novita_gpu.instances.lifecycle import Status, phase_of


class Idleable(Protocol):
    status: str
    upstream_status: str | None
    auto_stop_minutes: int
    ready_at: datetime | None
    failed_at: datetime | None
    last_used_at: datetime | None
    pending_action: str | None


def idle_since(instance: Idleable) -> datetime | None:
    """When the idle clock last started, or None while the instance cannot be idle."""
    if instance.status == Status.READY:
        started = instance.ready_at
    elif instance.status == Status.FAILED and phase_of(instance.upstream_status or "") == Status.RUNNING:
        started = instance.failed_at
    else:
        return None
    marks = [t for t in (started, instance.last_used_at) if t is not None]
    return max(marks) if marks else None


def stops_at(instance: Idleable) -> datetime | None:
    """When the instance becomes eligible for auto-stop, or None if it never will in its current state."""
    if instance.auto_stop_minutes <= 0 or instance.pending_action:
        return None
    since = idle_since(instance)
    return None if since is None else since + timedelta(minutes=instance.auto_stop_minutes)


def is_idle(instance: Idleable, now: datetime) -> bool:
    deadline = stops_at(instance)
    return deadline is not None and now >= deadline


def gpu_hours_saved(stopped_at: datetime, now: datetime, gpu_num: int) -> float:
    """GPU-hours not billed since an auto-stop (a lower bound: the instance might have been stopped later)."""
    return max(0.0, (now - stopped_at).total_seconds() / 3600.0) * gpu_num
