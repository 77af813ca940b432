"""A pool's members as the pool sees them: which are idle and how (ready, stopped, warming, broken), which
are claimed, which a claim takes first, and what the keeper should do to meet the targets. Pure functions.

A member is an ordinary instance row with `pool_id`; `pool_state` is its part: `ready` or `stopped` (an
idle member the pool keeps so, whatever its status on the way there) or `claimed` (handed out).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from novita_gpu.instances.lifecycle import Goal, Status
from novita_gpu.kit.tables import POOL_IDLE_STATES, Instance, Pool

# Statuses of a member on its way up (created or started, not yet ready).
_WARMING = frozenset({Status.CREATING, Status.STARTING, Status.RUNNING, Status.HEALTH_CHECKING, Status.RECOVERING})


def is_idle(row: Instance) -> bool:
    return row.pool_state in POOL_IDLE_STATES


def is_ready(row: Instance) -> bool:
    """Idle, ready, and nothing asked of it: a claim hands it out at once."""
    return (
        is_idle(row) and row.status == Status.READY and row.desired_state == Goal.RUNNING and row.pending_action is None
    )


def is_stopped(row: Instance) -> bool:
    """Idle and stopped with an instance at Novita: a claim starts it (its image is on its node)."""
    return (
        is_idle(row)
        and row.status == Status.STOPPED
        and row.desired_state == Goal.STOPPED
        and row.pending_action is None
        and row.novita_instance_id is not None
    )


def is_warming(row: Instance) -> bool:
    """Idle and on its way up: a claim takes it over rather than creating cold."""
    return is_idle(row) and row.desired_state == Goal.RUNNING and row.status in _WARMING


def is_broken(row: Instance) -> bool:
    """An idle member that cannot be handed out: failed (a health check, Novita), stopped without an
    instance at Novita, or stopped while it was meant to run (Novita stopped it, a reclaim). The keeper
    deletes it and makes another."""
    if not is_idle(row):
        return False
    if row.status == Status.FAILED:
        return True
    stopped = row.status == Status.STOPPED and row.pending_action is None
    return stopped and (row.novita_instance_id is None or row.desired_state == Goal.RUNNING)


def claimable(members: Iterable[Instance]) -> list[tuple[str, Instance]]:
    """Idle members a claim may take, best first: ready, then stopped, then warming (oldest first each)."""
    ranked = [(source, row) for row in members for source in (_source(row),) if source is not None]
    order = {"ready": 0, "stopped": 1, "warming": 2}
    return sorted(ranked, key=lambda item: (order[item[0]], item[1].created_at, item[1].id))


def _source(row: Instance) -> str | None:
    if is_ready(row):
        return "ready"
    if is_stopped(row):
        return "stopped"
    if is_warming(row):
        return "warming"
    return None


@dataclass
class Census:
    """A pool's live members by what they are now."""

    ready: list[Instance] = field(default_factory=list)
    stopped: list[Instance] = field(default_factory=list)
    warming: list[Instance] = field(default_factory=list)
    settling: list[Instance] = field(default_factory=list)  # idle, stopping or being deleted
    broken: list[Instance] = field(default_factory=list)
    claimed: list[Instance] = field(default_factory=list)

    @classmethod
    def of(cls, members: Sequence[Instance]) -> Census:
        census = cls()
        for row in members:
            if row.status == Status.TERMINATED:
                continue
            if row.pool_state == "claimed":
                census.claimed.append(row)
            elif is_broken(row):
                census.broken.append(row)
            elif is_ready(row):
                census.ready.append(row)
            elif is_stopped(row):
                census.stopped.append(row)
            elif is_warming(row):
                census.warming.append(row)
            else:
                census.settling.append(row)
        return census

    @property
    def total(self) -> int:
        return sum(map(len, (self.ready, self.stopped, self.warming, self.settling, self.broken, self.claimed)))

    def idle(self) -> list[Instance]:
        return [*self.ready, *self.stopped, *self.warming, *self.settling, *self.broken]

    def keeping(self, state: str) -> list[Instance]:
        """Idle members the pool keeps as `state` (ready or stopped), on their way there or not. A member
        kept ready that was stopped (a person's stop, a budget's stopAll) counts as a stopped one."""
        kept = [row for row in self.idle() if row not in self.broken]
        running = [row for row in kept if row.pool_state == "ready" and row.desired_state == Goal.RUNNING]
        return running if state == "ready" else [row for row in kept if row not in running]

    def answer(self) -> dict[str, int]:
        return {
            "ready": len(self.ready),
            "stopped": len(self.stopped),
            "warming": len(self.warming) + len(self.settling),
            "claimed": len(self.claimed),
            "total": self.total,
        }


def dormant(pool: Pool, now: datetime) -> bool:
    """No claim for idleMinutes (counted from the pool's last claim, or its last change): its ready members
    are kept stopped until the next claim."""
    if pool.idle_minutes <= 0:
        return False
    since = max(filter(None, (pool.last_claim_at, pool.updated_at)))
    return now - since >= timedelta(minutes=pool.idle_minutes)


def targets(pool: Pool, now: datetime) -> tuple[int, int]:
    """How many idle members to keep ready and stopped now: a dormant pool keeps its ready ones stopped."""
    if dormant(pool, now):
        return 0, pool.min_stopped + pool.min_ready
    return pool.min_ready, pool.min_stopped


@dataclass
class Plan:
    """What the keeper does to a pool, in one transaction under its lock."""

    delete: list[Instance] = field(default_factory=list)  # broken or surplus idle members
    park: list[Instance] = field(default_factory=list)  # ready (or booted) members to stop
    wake: list[Instance] = field(default_factory=list)  # stopped members to start as ready ones
    create_ready: int = 0
    create_stopped: int = 0


def plan(pool: Pool, census: Census, now: datetime) -> Plan:
    """Meet the targets: replace broken members; stop members kept stopped once booted (and surplus ready
    ones, when stopped ones are wanted); start stopped ones when ready ones are wanted (faster than a
    create); create the rest, within max; delete what is beyond every target."""
    want_ready, want_stopped = targets(pool, now)
    out = Plan(delete=list(census.broken))
    keep_ready = census.keeping("ready")
    keep_stopped = census.keeping("stopped")
    # Members kept stopped that have booted (ready): stop them (the image is on their node now).
    out.park = [r for r in census.ready if r.pool_state == "stopped"]
    surplus_ready = len(keep_ready) - want_ready
    if surplus_ready > 0:
        spare = [r for r in census.ready if r.pool_state == "ready"][:surplus_ready]
        room = max(0, want_stopped - len(keep_stopped))
        out.park += spare[:room]
        out.delete += spare[room:]
        keep_stopped += spare[:room]
    elif surplus_ready < 0:
        out.wake = census.stopped[:-surplus_ready]
        keep_stopped = [r for r in keep_stopped if r not in out.wake]
        out.create_ready = -surplus_ready - len(out.wake)
    surplus_stopped = len(keep_stopped) - want_stopped
    if surplus_stopped > 0:
        out.delete += [r for r in census.stopped if r not in out.wake][:surplus_stopped]
    else:
        out.create_stopped = -surplus_stopped
    room = pool.max_members - (census.total - len(out.delete))
    out.create_ready = max(0, min(out.create_ready, room))
    out.create_stopped = max(0, min(out.create_stopped, room - out.create_ready))
    return out
