"""The auto-stop sweeper: ends idle instances, and those past their max runtime, through the normal stop
path (reason AUTO_STOP or MAX_RUNTIME), or the normal delete path when the policy says delete or Novita
cannot stop them (see policy.py).

It wakes at the earliest deadline (never later than AUTO_STOP_CHECK_SECONDS), and at once when the GPU
poller finds an instance idle, so an instance is ended within moments of its deadline and never before
it. Each stop re-decides under the row's lock in the same transaction, so a PUT /last-used that lands
first always wins, and replicas sweeping at once cannot stop anything twice. The decision (the rule that
fired and its figures) is kept on the row and shown in its view, events and webhooks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select

from novita_gpu.audit import actions, recorder
from novita_gpu.autostop.policy import (
    SIGNALS,
    Decision,
    IdleAction,
    decide,
    gpu_hours_saved,
    idle_action,
    idle_since,
    stops_at,
    uses_gpu,
)
from novita_gpu.instances.lifecycle import Reason, Status
from novita_gpu.instances.rendering import iso
from novita_gpu.instances.service import InstanceService
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance
from novita_gpu.kit.workers import StoreWorker
from novita_gpu.observability.metrics import Metrics

log = structlog.get_logger(__name__)

MIN_SLEEP_SECONDS = 0.05
# Watched rows read per query (by id), the loop turning between reads: one read of every watched row as ORM
# rows held the event loop and tens of MB at once, twice a minute (docs/performance.md, per instance).
WATCH_CHUNK = 100
ENDED_BY_SWEEPER = (Reason.AUTO_STOP, Reason.MAX_RUNTIME)


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
    reason: str | None = None  # AUTO_STOP or MAX_RUNTIME once decided
    signal: str | None = None  # the rule that decided: lastUsed, gpu, both or maxRuntime

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
            "reason": self.reason,
            "signal": self.signal,
        }


def _candidate(row: Instance, now: datetime, decision: Decision | None = None) -> Candidate | None:
    deadline, action = stops_at(row, now), idle_action(row)
    if deadline is None or action is None:
        return None
    return Candidate(
        row.id,
        row.name,
        row.status,
        decision.action if decision else action,
        row.auto_stop_minutes,
        row.last_used_at,
        idle_since(row),
        deadline,
        str(decision.reason) if decision else None,
        decision.decided_by if decision else None,
    )


@dataclass(frozen=True, slots=True)
class _Swept:
    answer: dict[str, Any]  # what POST /api/instances/auto-stop/trigger answers
    earliest: datetime | None  # the earliest deadline among the rows looked at
    acted: bool


class AutoStopSweeper(StoreWorker):
    name = "autostop"
    pauses_on_clock = True  # it sleeps until the earliest deadline

    def __init__(
        self, db: Database, clock: Clock, instances: InstanceService, settings: Settings, metrics: Metrics
    ) -> None:
        super().__init__(db, clock, settings, settings.auto_stop_check_seconds)
        self.instances = instances
        self.metrics = metrics
        self.next_run_at: datetime | None = None

    async def step(self) -> float:
        self.next_run_at = self.clock.now() + timedelta(seconds=self.settings.auto_stop_check_seconds)
        swept = await self._sweep(dry_run=False)
        earliest = swept.earliest
        if earliest is not None and swept.acted:  # one it ended may have been the earliest: look again
            earliest = await self._earliest_deadline()
        delay = self._delay_until(earliest)
        self.next_run_at = self.clock.now() + timedelta(seconds=delay)
        return delay

    async def _watched(self, owner: str | None = None) -> AsyncIterator[Instance]:
        """Instances with an idle clock or a runtime limit running (the policy decides; the query narrows),
        WATCH_CHUNK at a time."""
        query = select(Instance).where(
            Instance.status.in_((Status.READY, Status.FAILED)),
            or_(Instance.auto_stop_minutes > 0, Instance.max_runtime_minutes > 0),
            Instance.pending_action.is_(None),
        )
        if owner is not None:
            query = query.where(Instance.owner == owner)
        after = ""
        while True:
            async with self.db.read() as session:
                rows = list(
                    (
                        await session.execute(query.where(Instance.id > after).order_by(Instance.id).limit(WATCH_CHUNK))
                    ).scalars()
                )
            for row in rows:
                if idle_action(row) is not None and (stops_at(row) is not None or uses_gpu(row)):
                    yield row
            if len(rows) < WATCH_CHUNK:
                return
            after = rows[-1].id
            await asyncio.sleep(0)

    async def seconds_until_next_sweep(self) -> float:
        """Until the earliest deadline, but at most one check interval."""
        return self._delay_until(await self._earliest_deadline())

    async def _earliest_deadline(self) -> datetime | None:
        now = self.clock.now()
        deadlines = [d async for row in self._watched() if (d := stops_at(row, now)) is not None]
        return min(deadlines, default=None)

    def _delay_until(self, earliest: datetime | None) -> float:
        interval = self.settings.auto_stop_check_seconds
        if earliest is None:
            return interval
        until = (earliest - self.clock.now()).total_seconds()
        return min(interval, max(MIN_SLEEP_SECONDS, until))

    async def sweep(self, *, dry_run: bool, owner: str | None = None) -> dict[str, Any]:
        return (await self._sweep(dry_run=dry_run, owner=owner)).answer

    async def _sweep(self, *, dry_run: bool, owner: str | None = None) -> _Swept:
        """One pass over the watched rows: end those due (unless `dry_run`). It also notes the earliest
        deadline seen, so that a step reads the rows once, not twice (at 10,000 ready instances a read is
        100 ORM loads of WATCH_CHUNK rows, each holding the loop)."""
        now = self.clock.now()
        due: list[Candidate] = []
        earliest: datetime | None = None
        async for row in self._watched(owner):
            if (decision := decide(row, now)) is not None and (c := _candidate(row, now, decision)):
                due.append(c)
            if (deadline := stops_at(row, now)) is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        acted: list[Candidate] = []
        if not dry_run and self.settings.auto_stop_enabled:
            for candidate in due:
                if await self._end(candidate):
                    acted.append(candidate)
                    self.metrics.observe_autostop("stopped" if candidate.action == "stop" else "deleted")
                    self.instances.notify_changed(candidate.instance_id)
        elif dry_run:
            for _ in due:
                self.metrics.observe_autostop("would_stop")
        if owner is None:
            self.last_run_at = now
        key = "wouldStop" if dry_run else "stopped"
        answer = {"dryRun": dry_run, "checkedAt": iso(now), key: [c.as_dict() for c in (due if dry_run else acted)]}
        return _Swept(answer, earliest, bool(acted))

    async def _end(self, candidate: Candidate) -> bool:
        """End the candidate if it is still due, for the same reason and with the same action, under its
        row's lock; the decision's figures go on the row and into the change's message."""
        async with self.db.write() as session:
            query = self.db.locked(select(Instance).where(Instance.id == candidate.instance_id))
            row = (await session.execute(query)).scalar_one_or_none()
            decision = None if row is None else decide(row, self.clock.now())
            if row is None or decision is None or decision.action != candidate.action:
                return False
            if str(decision.reason) != candidate.reason:
                return False
            row.auto_stop_decision = {
                "reason": str(decision.reason),
                "signal": decision.decided_by,
                "action": decision.action,
                **decision.figures,
            }
            end = self.instances.stop_row if decision.action == "stop" else self.instances.delete_row
            result = await end(session, row, decision.reason, message=decision.message())
            if result.changed:  # the audit row commits with the stop or delete
                action = "instance.stop" if decision.action == "stop" else "instance.delete"
                entry = recorder.system(
                    actions.AUTO_STOP, action, team=row.owner, target=row.id, details=row.auto_stop_decision
                )
                recorder.add(session, entry, self.clock.now())
        log.info(
            "autostop_ended",
            instance_id=candidate.instance_id,
            action=candidate.action,
            reason=candidate.reason,
            signal=candidate.signal,
        )
        return result.changed

    async def stats(self, owner: str) -> dict[str, Any]:
        now = self.clock.now()
        watched = gpu_watched = eligible = 0
        deadlines: list[Candidate] = []
        async for row in self._watched(owner):
            watched += 1
            gpu_watched += uses_gpu(row)
            eligible += decide(row, now) is not None
            if (candidate := _candidate(row, now)) is not None and (
                not deadlines or candidate.stops_at < deadlines[0].stops_at
            ):
                deadlines = [candidate]
        async with self.db.read() as session:
            ended = list(
                (
                    await session.execute(
                        select(Instance).where(Instance.owner == owner, Instance.status_reason.in_(ENDED_BY_SWEEPER))
                    )
                ).scalars()
            )
        by_signal: dict[str, dict[str, float]] = {
            signal: {"stopped": 0, "gpuHoursSaved": 0.0, "dollarsSaved": 0.0} for signal in SIGNALS
        }
        for row in ended:
            decided = (row.auto_stop_decision or {}).get("signal")
            if decided not in by_signal:  # ended before decisions were recorded: by lastUsed, the only rule then
                decided = "maxRuntime" if row.status_reason == Reason.MAX_RUNTIME else "lastUsed"
            figures = by_signal[decided]
            figures["stopped"] += 1
            ended_at = {Status.STOPPED: row.stopped_at, Status.TERMINATED: row.terminated_at}.get(Status(row.status))
            if ended_at is not None:
                saved = gpu_hours_saved(ended_at, now, row.gpu_num)
                figures["gpuHoursSaved"] += saved
                figures["dollarsSaved"] += saved / max(1, row.gpu_num) * (row.price_per_hour or 0.0)
        for figures in by_signal.values():
            figures["gpuHoursSaved"] = round(figures["gpuHoursSaved"], 4)
            figures["dollarsSaved"] = round(figures["dollarsSaved"], 4)
        return {
            "enabled": self.settings.auto_stop_enabled,
            "checkIntervalSeconds": self.settings.auto_stop_check_seconds,
            "defaultIdleMinutes": self.settings.auto_stop_idle_minutes,
            "lastRunAt": iso(self.last_run_at),
            "nextRunAt": iso(self.next_run_at),
            "watched": watched,
            "gpuWatched": gpu_watched,
            "eligibleNow": eligible,
            "nextDeadline": deadlines[0].as_dict() if deadlines else None,
            "stoppedSoFar": len(ended),
            "gpuHoursSaved": round(sum(f["gpuHoursSaved"] for f in by_signal.values()), 4),
            "dollarsSaved": round(sum(f["dollarsSaved"] for f in by_signal.values()), 4),
            "bySignal": by_signal,
        }
