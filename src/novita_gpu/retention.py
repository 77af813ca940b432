"""History retention: the store forgets what nobody needs any more, so months of running do not grow it
without bound.

- Terminated instances, with their events and webhook deliveries: HISTORY_RETENTION_DAYS after they
  were terminated, once none of their webhooks is still being delivered. Until then GET, the list and
  /events still show them.
- Finished webhook deliveries of instance events (delivered, gone, expired), with their attempts:
  HISTORY_RETENTION_DAYS after their last attempt. Pending ones are the dispatcher's until they are
  delivered or expire.
- Nothing of an API key's events (budget.exceeded): they and their deliveries, which reference no
  instance, stay with the cost history (one event per key and month at most), whatever instances go.
- Idempotency keys: IDEMPOTENCY_TTL_SECONDS after the create they recorded; they replay nothing later.
- Audit rows: AUDIT_RETENTION_DAYS after they were written (0 keeps them all). Each sweep that deletes
  anything records it in the audit trail: one `retention.purge` row per kind, with the count.

A live instance keeps its whole status history. Rows go in batches of 100, each its own short transaction
taken as a worker's turn: SQLite runs inline, and deleting months of rows at once would hold every request
behind it (docs/performance.md has the first sweep of a large store). Every replica
may sweep; deleting what another replica deleted first is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, delete, exists, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from novita_gpu.audit import actions, recorder
from novita_gpu.instances.lifecycle import Status
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import AuditEvent, IdempotencyRecord, Instance, WebhookDelivery
from novita_gpu.kit.workers import StoreWorker
from novita_gpu.observability.metrics import Metrics

log = structlog.get_logger(__name__)

FINISHED_DELIVERIES = ("delivered", "gone", "expired")
_has_pending_webhooks = (
    exists()
    .where(WebhookDelivery.instance_id == Instance.id, WebhookDelivery.status.not_in(FINISHED_DELIVERIES))
    .correlate(Instance)
)
BATCH_ROWS = 100


class Retention(StoreWorker):
    name = "retention"
    pauses_on_clock = True

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        metrics: Metrics,
        on_instances_deleted: Callable[[], None],
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        super().__init__(db, clock, settings, settings.retention_check_seconds)
        self.metrics = metrics
        self.on_instances_deleted = on_instances_deleted  # cached views of deleted rows must go
        self.batch_rows = batch_rows

    async def step(self) -> float:
        await self.sweep()
        return self.settings.retention_check_seconds

    async def sweep(self) -> dict[str, int]:
        """Delete what is past its retention; the number of rows deleted by kind."""
        now = self.clock.now()
        key_cutoff = now - timedelta(seconds=self.settings.idempotency_ttl_seconds)
        deleted = {
            "idempotency_keys": await self._purge(
                (IdempotencyRecord.owner, IdempotencyRecord.key), IdempotencyRecord.created_at < key_cutoff
            ),
            "webhook_deliveries": 0,
            "instances": 0,
            "audit_events": 0,
        }
        if self.settings.history_retention_days > 0:
            cutoff = now - timedelta(days=self.settings.history_retention_days)
            deleted["webhook_deliveries"] = await self._purge(
                (WebhookDelivery.id,),
                and_(
                    WebhookDelivery.status.in_(FINISHED_DELIVERIES),
                    WebhookDelivery.next_attempt_at < cutoff,
                    WebhookDelivery.account_event_id.is_(None),  # an account event's stay with it
                ),
            )
            deleted["instances"] = await self._purge(
                (Instance.id,),
                and_(
                    Instance.status == Status.TERMINATED,
                    func.coalesce(Instance.terminated_at, Instance.updated_at) < cutoff,
                    ~_has_pending_webhooks,  # still owed to a receiver (WEBHOOK_MAX_AGE above the retention)
                ),
            )
        if self.settings.audit_retention_days > 0:
            cutoff = now - timedelta(days=self.settings.audit_retention_days)
            deleted["audit_events"] = await self._purge((AuditEvent.id,), AuditEvent.at < cutoff)
        self.last_run_at = now
        await self._audit(deleted, now)
        for kind, count in deleted.items():
            if count:
                self.metrics.observe_retention(kind, count)
        if deleted["instances"]:
            self.on_instances_deleted()
        if any(deleted.values()):
            log.info("retention_swept", **deleted)
        return deleted

    async def _audit(self, deleted: dict[str, int], now: datetime) -> None:
        """One audit row per kind of rows deleted, with the count."""
        purged = {kind: count for kind, count in deleted.items() if count}
        if not purged:
            return
        async with self.db.worker_write() as session:
            for kind, count in purged.items():
                entry = recorder.system(
                    actions.RETENTION, "retention.purge", team=None, target=kind, details={"deleted": count}
                )
                recorder.add(session, entry, now)

    async def _purge(self, key: tuple[InstrumentedAttribute[Any], ...], condition: ColumnElement[bool]) -> int:
        """Delete the rows matching `condition`, `batch_rows` at a time; how many were deleted."""
        table = key[0].class_.__table__
        total = 0
        while True:
            batch = select(*key).where(condition).limit(self.batch_rows)
            async with self.db.worker_write() as session:
                result = await session.execute(
                    delete(table).where(tuple_(*key).in_(batch)).execution_options(synchronize_session=False)
                )
            deleted = int(getattr(result, "rowcount", 0) or 0)
            total += deleted
            if deleted < self.batch_rows:
                return total
