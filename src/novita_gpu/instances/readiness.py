"""The prober: takes instances from health_checking to ready the moment every http port answers.

It runs on its own fast cadence (PROBE_INTERVAL_SECONDS, and at once when an instance starts being
health-checked), apart
from the reconciler, whose ticks grow long when many instances change together: readiness is noticed
within a fraction of a second however busy the rest is. The reconciler moves an instance into
health_checking (with its connection details) and ends it with HEALTH_CHECK_TIMEOUT; the prober only
probes and marks ready. Its writes are guarded by the row's version, like every worker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from novita_gpu.instances import recovery
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.events import change_status
from novita_gpu.instances.guarded_write import reattach_if_current
from novita_gpu.instances.lifecycle import Status
from novita_gpu.instances.port_probes import ProbeResult, probe_http_ports
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance
from novita_gpu.kit.workers import StoreWorker

log = structlog.get_logger(__name__)

CONCURRENCY = 64


def health_report(results: list[ProbeResult], now: datetime) -> dict[str, Any]:
    return {
        "status": "healthy" if all(r.healthy for r in results) else "unhealthy",
        "checkedAt": now.isoformat().replace("+00:00", "Z"),
        "endpoints": [r.as_dict() for r in results],
    }


def _errors(report: dict[str, Any] | None) -> list[Any] | None:
    return None if report is None else [e["error"] for e in report.get("endpoints", [])]


class Prober(StoreWorker):
    name = "prober"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        changes: ChangeFeed,
        on_ready: Callable[[float | None, float], None] | None = None,
        observer: recovery.Observer | None = None,
    ) -> None:
        super().__init__(db, clock, settings, settings.probe_interval_seconds)
        self.changes = changes
        self.on_ready = on_ready
        self.observer = observer or recovery.Unobserved()  # a recovery that ends ready is counted there

    @property
    def allowed_gap(self) -> float:
        return 30.0

    async def step(self) -> float:
        await self.tick()
        return self.settings.probe_interval_seconds

    async def tick(self) -> list[str]:
        """Probe every instance in health_checking; returns the ids of those that became ready."""
        self.last_run_at = self.clock.now()
        async with self.db.read() as session:
            rows = list(
                (await session.execute(select(Instance).where(Instance.status == Status.HEALTH_CHECKING))).scalars()
            )
        if not rows:
            return []
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def probe(row: Instance) -> bool:
            async with semaphore:
                ports = (row.connection_details or {}).get("ports", [])
                results = await probe_http_ports(ports, row.health_check_path, self.settings.probe_timeout_seconds)
            return await self._record(row, results)

        became_ready = await asyncio.gather(*(probe(row) for row in rows))
        return [row.id for row, ready in zip(rows, became_ready, strict=True) if ready]

    async def _record(self, snap: Instance, results: list[ProbeResult]) -> bool:
        now = self.clock.now()
        report = health_report(results, now)
        healthy = all(r.healthy for r in results)
        if not healthy and _errors(snap.health_check) == _errors(report):
            return False  # nothing new to record
        if snap.status != Status.HEALTH_CHECKING:
            return False
        # A new instance's first readiness (not one after a start, a failure or a restart by Novita).
        first_since_create = snap.ready_at is None and snap.stopped_at is None and snap.failed_at is None
        async with self.db.worker_write() as session:
            row = await reattach_if_current(session, snap, lock=self.db.locks_rows)
            if row is None:
                return False  # changed meanwhile: the next pass looks again
            row.health_check = report
            row.updated_at = now
            row.version += 1
            if healthy:
                recovered = recovery.active(row)
                if not recovered or row.ready_at is None:  # maxRuntimeMinutes counts from the first ready
                    row.ready_at = now
                if not recovered:  # a recovery does not reset the idle clock
                    row.last_used_at = now
                row.phase_deadline_at = None
                await change_status(
                    session,
                    row,
                    Status.READY,
                    now=now,
                    default_webhook_url=self.settings.webhook_url,
                    message=f"Recovered: every http port answered (attempt {(row.recovery or {}).get('attempt')})."
                    if recovered
                    else "Every http port answered.",
                )
                recovery.end(row, now, "recovered", "Ready again.", self.settings, self.observer)
            running_since = row.started_at or row.created_at
        self.changes.pulse(snap.id)
        if healthy and self.on_ready is not None:
            since_create = (now - snap.created_at).total_seconds() if first_since_create else None
            self.on_ready(since_create, (now - running_since).total_seconds())
        return healthy
