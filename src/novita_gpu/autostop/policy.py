"""Who is idle, when they stop, how, and why. Pure functions over an instance's fields.

Three signals say an instance is idle (its `auto_stop_signal`):
- `lastUsed`: nobody marked it used (PUT /last-used) for its idle minutes. The idle clock starts when it
  becomes ready and restarts at every mark.
- `gpu`: its GPUs' average utilization stayed below `auto_stop_gpu_below` percent for the whole window,
  as Novita's monitoring reported it to the GPU poller (gpu_poller.py). No verdict, no stop.
- `both`: idle only when no mark came for the window AND the GPUs were idle.
When the poller could not read the GPUs (errors, no samples, gaps), a `gpu` or `both` instance is never
stopped on a guess: it falls back to `lastUsed`, and the decision records why.

`max_runtime_minutes` is a hard limit from ready, whatever the activity. A starting, stopping or stopped
instance is never stopped, and 0 minutes means never.

A failed instance that Novita still holds bills too, and nobody uses it through us: its idle clock starts
when it failed (the GPU signal does not apply to it), so it goes after the same idle limit unless someone
marks it used. One that Novita still runs is ended with its policy's action. One that failed while Novita
was still booting it (an image pull that never ends) cannot be stopped, since Novita stops only running
instances, and Novita bills from the image pull on: it never ran, so nothing on it is lost, and it is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from novita_gpu.instances.lifecycle import Reason, Status, phase_of

IdleAction = Literal["stop", "delete"]
Signal = Literal["lastUsed", "gpu", "both"]
DecidedBy = Literal["lastUsed", "gpu", "both", "maxRuntime"]
SIGNALS: tuple[DecidedBy, ...] = ("lastUsed", "gpu", "both", "maxRuntime")
# A GPU verdict decides a stop only while it is this recent: older, the GPUs may have woken up since.
GPU_VERDICT_FRESH = timedelta(minutes=5)


class Idleable(Protocol):
    status: str
    upstream_status: str | None
    auto_stop_minutes: int
    auto_stop_signal: str
    auto_stop_gpu_below: float
    auto_stop_action: str
    max_runtime_minutes: int
    ready_at: datetime | None
    failed_at: datetime | None
    last_used_at: datetime | None
    pending_action: str | None
    gpu_check: dict[str, Any] | None


@dataclass(frozen=True)
class GpuVerdict:
    """The GPU poller's last look at an instance, for the run that became ready at `ready_at`."""

    state: Literal["busy", "idle", "unavailable"]
    checked_at: datetime
    ready_at: datetime | None
    window_minutes: int
    threshold_percent: float
    reason: str | None = None

    @classmethod
    def of(cls, instance: Idleable) -> GpuVerdict | None:
        """The verdict on the row, if it is about this run with this policy (a restart or a changed
        policy makes an older one moot)."""
        check = instance.gpu_check
        if not check or check.get("state") not in ("busy", "idle", "unavailable"):
            return None
        verdict = cls(
            check["state"],
            datetime.fromisoformat(check["checkedAt"]),
            datetime.fromisoformat(check["readyAt"]) if check.get("readyAt") else None,
            int(check.get("windowMinutes", 0)),
            float(check.get("thresholdPercent", 0.0)),
            check.get("reason"),
        )
        current = (instance.ready_at, instance.auto_stop_minutes, instance.auto_stop_gpu_below)
        if (verdict.ready_at, verdict.window_minutes, verdict.threshold_percent) != current:
            return None
        return verdict

    def fresh(self, now: datetime | None) -> bool:
        return now is None or now - self.checked_at <= GPU_VERDICT_FRESH


@dataclass(frozen=True)
class Decision:
    """Why an instance is ended now: the reason code, the rule that fired and its figures."""

    reason: Reason
    decided_by: DecidedBy
    action: IdleAction
    figures: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        f = self.figures
        if self.decided_by == "maxRuntime":
            return f"Max runtime: {f['maxRuntimeMinutes']} min since it became ready."
        parts = []
        if self.decided_by in ("gpu", "both"):
            parts.append(
                f"average GPU utilization {f['gpuAvgPercent']}% (max {f['gpuMaxPercent']}%, {f['samples']} samples) "
                f"stayed below {f['gpuIdleBelowPercent']:g}% for {f['idleMinutes']} min"
            )
        if self.decided_by in ("lastUsed", "both"):
            parts.append(f"not marked used for {f['idleMinutes']} min")
        text = f"Auto-stop ({self.decided_by}): " + " and ".join(parts) + "."
        if f.get("fallbackReason"):
            text += f" GPU metrics unavailable ({f['fallbackReason']}): decided by lastUsed instead."
        return text


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def idle_action(instance: Idleable) -> IdleAction | None:
    """How the instance's billing ends once it is idle; None while it cannot be idle."""
    configured: IdleAction = "delete" if instance.auto_stop_action == "delete" else "stop"
    if instance.status == Status.READY:
        return configured
    if instance.status == Status.FAILED:
        phase = phase_of(instance.upstream_status or "")
        if phase == Status.RUNNING:
            return configured
        if phase in (Status.CREATING, Status.STARTING):
            return "delete"
    return None


def idle_since(instance: Idleable) -> datetime | None:
    """When the lastUsed idle clock last started, or None while the instance cannot be idle."""
    if idle_action(instance) is None:
        return None
    started = instance.ready_at if instance.status == Status.READY else instance.failed_at
    marks = [t for t in (started, instance.last_used_at) if t is not None]
    return max(marks) if marks else None


def last_used_deadline(instance: Idleable) -> datetime | None:
    """When nobody will have marked the instance used for its idle minutes; None if it never can be idle."""
    if instance.auto_stop_minutes <= 0 or instance.pending_action:
        return None
    since = idle_since(instance)
    return None if since is None else since + timedelta(minutes=instance.auto_stop_minutes)


def uses_gpu(instance: Idleable) -> bool:
    """Whether the GPU poller watches the instance: a ready one whose signal is gpu or both."""
    return (
        instance.status == Status.READY
        and instance.auto_stop_signal in ("gpu", "both")
        and instance.auto_stop_minutes > 0
        and not instance.pending_action
    )


def runtime_deadline(instance: Idleable) -> datetime | None:
    """When a ready instance reaches its max runtime (None: no limit, or not ready)."""
    if instance.max_runtime_minutes <= 0 or instance.pending_action or instance.status != Status.READY:
        return None
    if instance.ready_at is None:
        return None
    return instance.ready_at + timedelta(minutes=instance.max_runtime_minutes)


def _idle_deadline(instance: Idleable, now: datetime | None) -> datetime | None:
    """When the idle rule will fire with what is known now (None: not yet known, or never)."""
    by_use = last_used_deadline(instance)
    if not uses_gpu(instance):
        return by_use
    verdict = GpuVerdict.of(instance)
    if verdict is None:
        return None  # waiting for the poller's first look
    if verdict.state == "unavailable":
        return by_use  # the lastUsed fallback
    if verdict.state != "idle" or not verdict.fresh(now):
        return None
    if instance.auto_stop_signal == "gpu":
        return verdict.checked_at
    return None if by_use is None else max(by_use, verdict.checked_at)


def stops_at(instance: Idleable, now: datetime | None = None) -> datetime | None:
    """When the instance will be ended if nothing changes, or None if it never will in its current state
    or the GPU poller has yet to look. With `now`, a GPU verdict that has gone stale no longer counts."""
    deadlines = [d for d in (runtime_deadline(instance), _idle_deadline(instance, now)) if d is not None]
    return min(deadlines) if deadlines else None


def decide(instance: Idleable, now: datetime) -> Decision | None:
    """Whether the instance is to be ended at `now`, and why (None: not yet)."""
    action = idle_action(instance)
    if action is None:
        return None
    runtime = runtime_deadline(instance)
    if runtime is not None and now >= runtime:
        limit = {"maxRuntimeMinutes": instance.max_runtime_minutes, "readyAt": _iso(instance.ready_at)}
        return Decision(Reason.MAX_RUNTIME, "maxRuntime", action, _stamped(limit, now))
    idle = _idle_deadline(instance, now)
    if idle is None or now < idle:
        return None
    figures: dict[str, Any] = {"idleMinutes": instance.auto_stop_minutes, "idleSince": _iso(idle_since(instance))}
    figures["lastUsedAt"] = _iso(instance.last_used_at)
    if not uses_gpu(instance):
        return Decision(Reason.AUTO_STOP, "lastUsed", action, _stamped(figures, now))
    verdict = GpuVerdict.of(instance)
    assert verdict is not None and instance.gpu_check is not None  # _idle_deadline needs one
    figures["configuredSignal"] = instance.auto_stop_signal
    if verdict.state == "unavailable":
        figures["fallbackReason"] = verdict.reason
        return Decision(Reason.AUTO_STOP, "lastUsed", action, _stamped(figures, now))
    check = instance.gpu_check
    figures |= {
        "gpuIdleBelowPercent": instance.auto_stop_gpu_below,
        "gpuAvgPercent": check.get("avgPercent"),
        "gpuMaxPercent": check.get("maxPercent"),
        "samples": check.get("samples"),
        "samplesFrom": check.get("from"),
        "samplesUntil": check.get("until"),
        "checkedAt": check.get("checkedAt"),
    }
    signal: DecidedBy = "gpu" if instance.auto_stop_signal == "gpu" else "both"
    return Decision(Reason.AUTO_STOP, signal, action, _stamped(figures, now))


def _stamped(figures: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**figures, "decidedAt": _iso(now)}


def is_idle(instance: Idleable, now: datetime) -> bool:
    return decide(instance, now) is not None


def gpu_hours_saved(ended_at: datetime, now: datetime, gpu_num: int) -> float:
    """GPU-hours not billed since an auto-stop (a lower bound: the instance might have been stopped later)."""
    return max(0.0, (now - ended_at).total_seconds() / 3600.0) * gpu_num
