"""The audit trail's vocabulary: the action each mutating route records, and the actors of the actions workers
take on their own. docs/audit.md shows the same tables (a test holds them equal).

A route's action is looked up by method and path template; a mutating route missing from the table (a test
keeps the table whole) still records, under a name made of its path's words and its method.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"  # the outcome of what succeeded; otherwise the error's code (FORBIDDEN, QUOTA_EXCEEDED, ...)
SYSTEM = "system:"
AUTO_STOP = "system:auto-stop"  # autostop/sweeper.py: an idle instance, or one past its max runtime, ended
BUDGET = "system:budget"  # costs/budgets.py: a monthly budget reached, and its stopAll
SPOT_RECOVERY = "system:spot-recovery"  # a reclaimed spot instance's recovery begun and ended
RETENTION = "system:retention"  # retention.py: history past its retention deleted
POOL = "system:pool"  # pools/keeper.py: a pool's members made, started, stopped or deleted to meet its targets


@dataclass(frozen=True, slots=True)
class RouteAction:
    """What a route's row says: its action, and where the target and the team are read when the path does
    not say (a create's new id is in its answer)."""

    name: str
    target: str | None = None  # the answer's field naming the target; else the path's parameter
    team: str | None = None  # the answer's field naming the team acted in; else the caller's team


ROUTE_ACTIONS: dict[tuple[str, str], RouteAction] = {
    ("POST", "/api/instances"): RouteAction("instance.create", target="instanceId"),
    ("POST", "/api/instances/start"): RouteAction("instance.start", target="instanceId"),
    ("POST", "/api/instances/stop"): RouteAction("instance.stop", target="instanceId"),
    ("POST", "/api/instances/delete"): RouteAction("instance.delete", target="instanceId"),
    ("POST", "/api/instances/{instance_id}/start"): RouteAction("instance.start"),
    ("POST", "/api/instances/{instance_id}/stop"): RouteAction("instance.stop"),
    ("DELETE", "/api/instances/{instance_id}"): RouteAction("instance.delete"),
    ("PATCH", "/api/instances/{instance_id}"): RouteAction("instance.update"),
    ("PUT", "/api/instances/{instance_id}/last-used"): RouteAction("instance.touch"),
    ("POST", "/api/instances/sync"): RouteAction("instance.sync"),
    ("POST", "/api/instances/auto-stop/trigger"): RouteAction("autostop.trigger"),
    ("POST", "/api/volumes"): RouteAction("volume.create", target="volumeId"),
    ("POST", "/api/volumes/adopt"): RouteAction("volume.adopt", target="volumeId"),
    ("PATCH", "/api/volumes/{volume}"): RouteAction("volume.resize", target="volumeId"),
    ("DELETE", "/api/volumes/{volume}"): RouteAction("volume.delete", target="volumeId"),
    ("POST", "/api/pools"): RouteAction("pool.create", target="poolId"),
    ("PATCH", "/api/pools/{name}"): RouteAction("pool.update", target="poolId"),
    ("DELETE", "/api/pools/{name}"): RouteAction("pool.delete", target="poolId"),
    ("POST", "/api/pools/{name}/claim"): RouteAction("pool.claim", target="instanceId"),
    ("POST", "/api/teams"): RouteAction("team.create", target="id", team="id"),
    ("PATCH", "/api/teams/{ref}"): RouteAction("team.update", target="id", team="id"),
    ("POST", "/api/keys"): RouteAction("key.create", target="id", team="team"),
    ("POST", "/api/keys/{key_id}/rotate"): RouteAction("key.rotate", team="team"),
    ("DELETE", "/api/keys/{key_id}"): RouteAction("key.revoke", team="team"),
    ("PUT", "/api/budget"): RouteAction("budget.set", target="apiKey", team="apiKey"),
    ("DELETE", "/api/budget"): RouteAction("budget.delete", target="apiKey", team="apiKey"),
    ("POST", "/api/cache/clear"): RouteAction("cache.clear"),
}

# What workers record (actor, action): the same action names as a person's where they do the same thing.
SYSTEM_ACTIONS: tuple[tuple[str, str], ...] = (
    (AUTO_STOP, "instance.stop"),
    (AUTO_STOP, "instance.delete"),
    (BUDGET, "budget.exceeded"),
    (BUDGET, "instance.stop"),
    (SPOT_RECOVERY, "recovery.begin"),
    (SPOT_RECOVERY, "recovery.end"),
    (RETENTION, "retention.purge"),
    (POOL, "pool.refill"),
    (POOL, "pool.drain"),
)


def route_action(method: str, template: str) -> RouteAction:
    """The action of a request to the route `template` (e.g. /api/instances/{instance_id}/stop)."""
    found = ROUTE_ACTIONS.get((method, template))
    if found is not None:
        return found
    words = [part for part in template.split("/") if part and part != "api" and not part.startswith("{")]
    return RouteAction(".".join([*words, method.lower()]))
