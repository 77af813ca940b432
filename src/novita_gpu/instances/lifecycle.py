"""The public status vocabulary and how Novita's raw statuses map onto it. Pure functions only.

The statuses themselves (`Status`) are the client's (novita_gpu_client.vocabulary): one list for the
service and every client that waits for one."""

from __future__ import annotations

from enum import StrEnum

from novita_gpu_client.vocabulary import Status as Status  # re-exported: the service names it from here


class Reason(StrEnum):
    USER = "USER"
    AUTO_STOP = "AUTO_STOP"
    MAX_RUNTIME = "MAX_RUNTIME"  # maxRuntimeMinutes reached, whatever the activity
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"  # its key's budget was spent, with onExceeded: stopAll
    NO_CAPACITY = "NO_CAPACITY"
    STARTUP_TIMEOUT = "STARTUP_TIMEOUT"
    HEALTH_CHECK_TIMEOUT = "HEALTH_CHECK_TIMEOUT"
    STOP_TIMEOUT = "STOP_TIMEOUT"
    DELETE_TIMEOUT = "DELETE_TIMEOUT"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    SPOT_RECLAIMED = "SPOT_RECLAIMED"
    RECOVERY_FAILED = "RECOVERY_FAILED"  # a reclaimed spot instance could not be brought back
    POOL = "POOL"  # its warm pool parked, replaced or drained it, or took it back (pools/)
    UPSTREAM_STOPPED = "UPSTREAM_STOPPED"
    UPSTREAM_DELETED = "UPSTREAM_DELETED"


class Action(StrEnum):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    DELETE = "delete"
    MIGRATE = "migrate"  # a reclaimed spot instance moved to another node (recovery.py)


class Goal(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    TERMINATED = "terminated"


# Statuses in which the worker watches closely (fast cadence).
CHANGING = frozenset(
    {
        Status.CREATING,
        Status.RECOVERING,
        Status.STARTING,
        Status.RUNNING,
        Status.HEALTH_CHECKING,
        Status.STOPPING,
        Status.TERMINATING,
    }
)
# Statuses from which a start request is carried out.
STARTABLE = frozenset({Status.STOPPED, Status.FAILED})
# Statuses in which a start request is already satisfied (answered 200 with the current status).
ALREADY_STARTED = frozenset(
    {Status.CREATING, Status.RECOVERING, Status.STARTING, Status.RUNNING, Status.HEALTH_CHECKING, Status.READY}
)
ALREADY_STOPPED = frozenset({Status.STOPPED, Status.STOPPING})
GONE = frozenset({Status.TERMINATING, Status.TERMINATED})
# Statuses of a record that wants no upstream instance unless it already has one: an instance that
# appears later under its name (a create that completed late, a duplicate) is deleted.
SETTLED = frozenset({Status.STOPPED, Status.TERMINATED, Status.FAILED})

_UPSTREAM_PHASE: dict[str, Status] = {
    "pending": Status.CREATING,
    "toCreate": Status.CREATING,
    "creating": Status.CREATING,
    "pulling": Status.STARTING,
    "toStart": Status.STARTING,
    "starting": Status.STARTING,
    "toRestart": Status.STARTING,
    "restarting": Status.STARTING,
    "toReset": Status.STARTING,
    "resetting": Status.STARTING,
    "migrating": Status.STARTING,
    "running": Status.RUNNING,
    "toStop": Status.STOPPING,
    "stopping": Status.STOPPING,
    "freezing": Status.STOPPING,
    "exited": Status.STOPPED,
    "toRemove": Status.TERMINATING,
    "removing": Status.TERMINATING,
    "removed": Status.TERMINATED,
}


def is_leaving(upstream_status: str) -> bool:
    """Novita is removing (or has removed) the instance: nobody may adopt it, nothing more to do."""
    return phase_of(upstream_status) in (Status.TERMINATING, Status.TERMINATED)


def phase_of(upstream_status: str) -> Status | None:
    """The public phase a raw Novita status belongs to (None for a status we do not know)."""
    return _UPSTREAM_PHASE.get(upstream_status)


def stop_reason(goal: str, pending_reason: str | None, spot_reclaimed: bool) -> Reason:
    """Why an instance we see exited is stopped."""
    if spot_reclaimed and goal == Goal.RUNNING:
        return Reason.SPOT_RECLAIMED
    if goal == Goal.STOPPED:
        return Reason(pending_reason) if pending_reason is not None and pending_reason in set(Reason) else Reason.USER
    return Reason.SPOT_RECLAIMED if spot_reclaimed else Reason.UPSTREAM_STOPPED


def is_probe_healthy(status_code: int) -> bool:
    """An http port is up when its app answers: any status below 500 except 404 (nothing there) and 429."""
    return status_code < 500 and status_code not in (404, 429)
