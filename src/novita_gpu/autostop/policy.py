"""Who is idle, when they stop, and how. Pure functions over an instance's fields.

The idle clock starts when the instance becomes ready and restarts at every PUT /last-used; a starting,
stopping or stopped instance is never stopped for idleness, and 0 minutes means never.

A failed instance that Novita still holds bills too, and nobody uses it through us: its idle clock starts
when it failed, so it goes after the same idle limit unless someone marks it used (to look into it, say).
One that Novita still runs is stopped. One that failed while Novita was still booting it (an image pull
that never ends) cannot be stopped, since Novita stops only running instances, and Novita bills from the
image pull on: it never ran, so nothing on it is lost, and it is deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Protocol

from novita_gpu.instances.lifecycle import Status, phase_of

IdleAction = Literal["stop", "delete"]


class Idleable(Protocol):
    status: str
    upstream_status: str | None
    auto_stop_minutes: int
    ready_at: datetime | None
    failed_at: datetime | None
    last_used_at: datetime | None
    pending_action: str | None


def idle_action(instance: Idleable) -> IdleAction | None:
    """How the instance's billing ends once it is idle; None while it cannot be idle."""
    if instance.status == Status.READY:
        return "stop"
    if instance.status == Status.FAILED:
        phase = phase_of(instance.upstream_status or "")
        if phase == Status.RUNNING:
            return "stop"
        if phase in (Status.CREATING, Status.STARTING):
            return "delete"
    return None


def idle_since(instance: Idleable) -> datetime | None:
    """When the idle clock last started, or None while the instance cannot be idle."""
    if idle_action(instance) is None:
        return None
    started = instance.ready_at if instance.status == Status.READY else instance.failed_at
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


def gpu_hours_saved(ended_at: datetime, now: datetime, gpu_num: int) -> float:
    """GPU-hours not billed since an auto-stop (a lower bound: the instance might have been stopped later)."""
    return max(0.0, (now - ended_at).total_seconds() / 3600.0) * gpu_num
