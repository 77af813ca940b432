"""The reconciler's writes to an instance row, and the endings that several phases share.

Every write is guarded (guarded_write.py): it lands only if the row still has the version this worker read
and the lease it was claimed under, so a worker that decided on a stale row, or whose row another replica
took, changes nothing and the next tick decides again. A status change is written with its event and
webhook rows (events.py) in the same transaction, and every write pulses the change feed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.instances import recovery
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.events import change_status
from novita_gpu.instances.guarded_write import reattach_if_current, show_written, update_if_current
from novita_gpu.instances.lifecycle import Goal, Reason, Status
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.retry_timing import full_jitter
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance

log = structlog.get_logger(__name__)

# A change to the attached row, inside the write's transaction.
Mutation = Callable[[AsyncSession, Instance], Awaitable[None]]


@dataclass(eq=False)
class RowWrites:
    db: Database
    clock: Clock
    settings: Settings
    changes: ChangeFeed
    observer: recovery.Observer = field(default_factory=recovery.Unobserved)

    async def apply(self, snap: Instance, mutate: Mutation) -> Instance | None:
        """Apply `mutate` to the current row if nobody changed it since `snap` was read (and its lease, which
        `snap` was loaded under, still holds)."""
        async with self.db.worker_write() as session:
            row = await reattach_if_current(session, snap, lock=self.db.locks_rows, lease_token=snap.lease_token)
            if row is None:
                return None
            await mutate(session, row)
            row.version += 1
            row.updated_at = self.clock.now()
        self.changes.pulse(row.id)
        return row

    async def update(self, snap: Instance, values: dict[str, Any]) -> Instance | None:
        """`apply` for a write that only sets columns: one guarded UPDATE, without the ORM's unit of work."""
        values = {**values, "updated_at": self.clock.now()}
        async with self.db.worker_write() as session:
            if not await update_if_current(session, snap, values, lease_token=snap.lease_token):
                return None
        self.changes.pulse(snap.id)
        return show_written(snap, values)

    async def change(self, session: AsyncSession, row: Instance, to: Status, **kwargs: Any) -> None:
        """Move the attached `row` to `to`, with its event and webhook rows."""
        await change_status(
            session, row, to, now=self.clock.now(), default_webhook_url=self.settings.webhook_url, **kwargs
        )

    # -- endings shared by the phases --------------------------------------------------------------

    async def retry_later(
        self, row: Instance, message: str, after: float | None = None, *, create_made: bool | None = None
    ) -> bool:
        """The upstream call did not go through: ask again after `after` seconds, or backing off. With
        `create_made=False`, Novita is known not to have made the create, so it may be sent again."""

        async def mutate(session: AsyncSession, r: Instance) -> None:
            if create_made is False:
                r.create_attempted_at = None
            r.action_attempts += 1
            wait = after if after is not None else full_jitter(r.action_attempts, base=2.0, cap=60.0)
            r.next_action_at = self.clock.now() + timedelta(seconds=wait)
            r.status_message = message

        return await self.apply(row, mutate) is not None

    def end_recovery(self, r: Instance, outcome: recovery.Outcome, message: str | None) -> None:
        """Inside a mutation: end `r`'s recovery under way (if any) and count it (recovery.py)."""
        recovery.end(r, self.clock.now(), outcome, message, self.settings, self.observer)

    async def fail(self, row: Instance, reason: Reason, message: str, *, keep_action: bool = False) -> bool:
        """End the row `failed`; with `keep_action`, its stop or delete is still asked for. A recovery under
        way ends with it (RECOVERY_FAILED, or NO_CAPACITY), and the record goes back to the reclaimed instance
        when no replacement exists, so a later start can use it."""

        async def mutate(session: AsyncSession, r: Instance) -> None:
            why, text = reason, message
            if not keep_action:
                r.pending_action = None
                r.next_action_at = None
            r.create_attempted_at = None
            r.failed_at = self.clock.now()
            if recovery.active(r):
                attempt = (r.recovery or {}).get("attempt")
                if reason != Reason.NO_CAPACITY:
                    why = Reason.RECOVERY_FAILED
                text = f"Recovery attempt {attempt} ({recovery.path(r)}) failed: {message}"
                self.end_recovery(r, "failed", text)
            await self.change(session, r, Status.FAILED, reason=why, message=text)

        log.warning("instance_failed", instance_id=row.id, reason=str(reason))
        return await self.apply(row, mutate) is not None

    async def gone_upstream(self, row: Instance) -> bool:
        """Novita no longer has the instance: the row ends `terminated`, as asked or not."""

        async def mutate(session: AsyncSession, r: Instance) -> None:
            if r.desired_state == Goal.TERMINATED:  # deleted as asked: by a user, or by auto-stop
                reason = Reason(r.pending_reason) if r.pending_reason in set(Reason) else Reason.USER
            else:
                reason = Reason.UPSTREAM_DELETED
            self.end_recovery(r, "failed", "Novita no longer has the instance.")
            r.pending_action = None
            r.desired_state = Goal.TERMINATED
            r.terminated_at = self.clock.now()
            r.upstream_status = "removed"
            await self.change(session, r, Status.TERMINATED, reason=reason)

        return await self.apply(row, mutate) is not None
