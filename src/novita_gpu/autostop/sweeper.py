"""The auto-stop sweeper: stops idle instances through the normal stop path (reason AUTO_STOP), or
deletes them through the normal delete path when Novita cannot stop them (see policy.py).

It wakes at the earliest idle deadline (never later than AUTO_STOP_CHECK_SECONDS), so an idle instance
is stopped within moments of its deadline and never before it. Each stop re-checks idleness under the
row's lock in the same transaction, so a PUT /last-used that lands first always wins, and replicas
sweeping at once cannot stop anything twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select

from novita_gpu.autostop.policy import IdleAction, gpu_hours_saved, idle_action, idle_since, is_idle, stops_at
from novita_gpu.clock import Clock
from novita_gpu.db import Database
from novita_gpu.instances.lifecycle import Reason, Status
from novita_gpu.instances.models import Instance
from novita_gpu.instances.service import InstanceService
from novita_gpu.instances.view import iso
from novita_gpu.observability.metrics import Metrics
from novita_gpu.settings import Settings
from novita_gpu.workers import PeriodicWorker

log = structlog.get_logger(__name__)

MIN_SLEEP_SECONDS = 0.05


@dataclass(frozen=True)
class Candidate:
    instance_id: str
    name: str
    status: str
    action: IdleAction
    idle_minutes: int
    last_used_at: datetime | None
    idle_since: datetime | None
    stops_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "name": self.name,
            "status": self.status,
            "action": self.action,
            "idleMinutes": self.idle_minutes,
            "lastUsedAt": iso(self.last_used_at),
            "idleSince": iso(self.idle_since),
            "stopsAt": iso(self.stops_at),
        }


def _candidate(row: Instance) -> Candidate | None:
    deadline, action = stops_at(row), idle_action(row)
    if deadline is None or action is None:
        return None
    return Candidate(
        row.id, row.name, row.status, action, row.auto_stop_minutes, row.last_used_at, idle_since(row), deadline
    )


class AutoStopSweeper(PeriodicWorker):
    name = "autostop"
    pauses_on_clock = True  # it sleeps until the earliest idle deadline

    def __init__(
        self, db: Database, clock: Clock, instances: InstanceService, settings: Settings, metrics: Metrics
    ) -> None:
        super().__init__(clock)
        self.db = db
        self.instances = instances
        self.settings = settings
        self.metrics = metrics
        self.retry_seconds = settings.auto_stop_check_seconds
        self.next_run_at: datetime | None = None

    @property
    def allowed_gap(self) -> float:
        return self.settings.auto_stop_check_seconds * 3 + 30

    async def step(self) -> float:
        self.next_run_at = self.clock.now() + timedelta(seconds=self.settings.auto_stop_check_seconds)
        await self.sweep(dry_run=False)
        delay = await self.seconds_until_next_sweep()
        self.next_run_at = self.clock.now() + timedelta(seconds=delay)
        return delay

    async def _watched(self, owner: str | None = None) -> list[Instance]:
        """Instances with an idle clock running (the policy decides; the query only narrows)."""
        query = select(Instance).where(
            Instance.status.in_((Status.READY, Status.FAILED)),
            Instance.auto_stop_minutes > 0,
            Instance.pending_action.is_(None),
        )
        if owner is not None:
            query = query.where(Instance.owner == owner)
        async with self.db.read() as session:
            return [row for row in (await session.execute(query)).scalars() if stops_at(row) is not None]

    async def seconds_until_next_sweep(self) -> float:
        """Until the earliest idle deadline, but at most one check interval."""
        interval = self.settings.auto_stop_check_seconds
        deadlines = [d for row in await self._watched() if (d := stops_at(row)) is not None]
        if not deadlines:
            return interval
        until = (min(deadlines) - self.clock.now()).total_seconds()
        return min(interval, max(MIN_SLEEP_SECONDS, until))

    async def sweep(self, *, dry_run: bool, owner: str | None = None) -> dict[str, Any]:
        now = self.clock.now()
        idle = [c for row in await self._watched(owner) if is_idle(row, now) and (c := _candidate(row))]
        acted: list[Candidate] = []
        if not dry_run and self.settings.auto_stop_enabled:
            for candidate in idle:
                if await self._end(candidate):
                    acted.append(candidate)
                    self.metrics.observe_autostop("stopped" if candidate.action == "stop" else "deleted")
                    self.instances.notify_changed(candidate.instance_id)
        elif dry_run:
            for _ in idle:
                self.metrics.observe_autostop("would_stop")
        if owner is None:
            self.last_run_at = now
        key = "wouldStop" if dry_run else "stopped"
        return {"dryRun": dry_run, "checkedAt": iso(now), key: [c.as_dict() for c in (idle if dry_run else acted)]}

    async def _end(self, candidate: Candidate) -> bool:
        """Stop (or delete) the candidate if it is still idle, with the same action, under its row's lock."""
        async with self.db.write() as session:
            query = select(Instance).where(Instance.id == candidate.instance_id)
            if not self.db.is_sqlite:
                query = query.with_for_update()
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None or not is_idle(row, self.clock.now()) or idle_action(row) != candidate.action:
                return False
            end = self.instances.stop_row if candidate.action == "stop" else self.instances.delete_row
            code, _ = await end(session, row, Reason.AUTO_STOP)
        log.info("autostop_ended", instance_id=candidate.instance_id, action=candidate.action)
        return code == 202

    async def stats(self, owner: str) -> dict[str, Any]:
        now = self.clock.now()
        watched = await self._watched(owner)
        deadlines = sorted((c for row in watched if (c := _candidate(row))), key=lambda c: c.stops_at)
        async with self.db.read() as session:
            stopped = list(
                (
                    await session.execute(
                        select(Instance).where(Instance.owner == owner, Instance.status_reason == Reason.AUTO_STOP)
                    )
                ).scalars()
            )
        hours = dollars = 0.0
        for row in stopped:
            ended_at = {Status.STOPPED: row.stopped_at, Status.TERMINATED: row.terminated_at}.get(Status(row.status))
            if ended_at is not None:
                saved = gpu_hours_saved(ended_at, now, row.gpu_num)
                hours += saved
                dollars += saved / max(1, row.gpu_num) * (row.price_per_hour or 0.0)
        return {
            "enabled": self.settings.auto_stop_enabled,
            "checkIntervalSeconds": self.settings.auto_stop_check_seconds,
            "defaultIdleMinutes": self.settings.auto_stop_idle_minutes,
            "lastRunAt": iso(self.last_run_at),
            "nextRunAt": iso(self.next_run_at),
            "watched": len(watched),
            "eligibleNow": sum(1 for c in deadlines if c.stops_at <= now),
            "nextDeadline": deadlines[0].as_dict() if deadlines else None,
            "stoppedSoFar": len(stopped),
            "gpuHoursSaved": round(hours, 4),
            "dollarsSaved": round(dollars, 4),
        }
