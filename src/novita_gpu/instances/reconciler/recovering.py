"""Recovering: a reclaimed spot instance brought back under its record (instances/recovery.py, docs/spot.md).

Observing hands every reclaim it sees here (`reclaimed`). Unless the policy leaves it stopped, the row goes
`recovering` (events `instance.reclaimed`, then `instance.recovering`) on one of two paths:

- migrate: the intent first (`migrateSentAt`), then Novita's `POST /gpu/instance/migrate`, sent once the
  reclaim has ended (Novita migrates exited instances only). Answered, the row follows the id Novita names
  and the usual flow: starting, running, health_checking, ready. Refused, its `instanceMigrate` job failed,
  or not running by STARTUP_TIMEOUT_SECONDS: the same attempt goes on as a recreate. A migrate left without
  an answer (a timeout, a 5xx, this process killed) is settled by what Novita shows: the instance migrating
  or running, another instance under its name (a new id), or its job; else it is sent again after a grace.
- recreate: the row's next upstream name (`-r<n>`) and the create phase (creating.py), the reclaimed
  instance's cluster first. With no spot capacity anywhere, on-demand when the policy allows it.

The replacement ready ends the recovery (readiness.py); a failure ends it in `failed` (writes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.audit import actions, recorder
from novita_gpu.instances import recovery
from novita_gpu.instances.lifecycle import Action, Goal, Reason, Status, is_leaving, phase_of
from novita_gpu.instances.listing import Listing
from novita_gpu.instances.reconciler.writes import RowWrites
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.in_doubt import AMBIGUOUS_CREATE_GRACE
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import Listed, NovitaClient, NovitaError, RateLimited

log = structlog.get_logger(__name__)

# A migrate Novita accepted but whose instance still shows exited without a job to say why: how long the
# listing may lag before the migrate counts as failed.
_MIGRATE_SHOWS_WITHIN = timedelta(seconds=30)


def _at(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stop_note(row: Instance, settings: Settings, now: datetime) -> str:
    """What the stop of a reclaimed spot instance says comes next (the policy left it stopped)."""
    policy = recovery.policy_of(row, settings)
    if policy.on_reclaim == "stop":
        return "Its recovery policy is onReclaim stop: start it to run it again."
    return (
        f"Not recovered: {recovery.recent(row, now)} recoveries in the last 24 h reached maxRecoveries "
        f"({policy.max_recoveries}). Start it to run it again."
    )


@dataclass(eq=False)
class Recovering:
    writes: RowWrites
    client: NovitaClient
    clock: Clock
    settings: Settings

    # -- a reclaim seen ---------------------------------------------------------------------------

    def recovers(self, row: Instance, now: datetime) -> bool:
        """Whether a reclaim of the row's instance starts a recovery (else it stays stopped)."""
        policy = recovery.policy_of(row, self.settings)
        return (
            row.billing_mode == "spot"
            and row.desired_state == Goal.RUNNING
            and policy.on_reclaim != "stop"
            and recovery.recent(row, now) < policy.max_recoveries
        )

    async def reclaimed(self, row: Instance, upstream: Listed, now: datetime) -> bool:
        """Begin a recovery of `row`, whose instance Novita reclaimed (or is reclaiming)."""
        policy = recovery.policy_of(row, self.settings)
        chosen: recovery.Path = "recreate" if policy.on_reclaim == "recreate" else "migrate"
        reclaimed_at = datetime.fromtimestamp(upstream.spot_reclaim_time, UTC) if upstream.spot_reclaim_time else now
        seen = now.strftime("%Y-%m-%d %H:%M:%S UTC")

        async def begin(session: AsyncSession, r: Instance) -> None:
            attempt = recovery.begin(r, now, chosen, reclaimed_at=reclaimed_at)
            r.upstream_status = upstream.status
            r.health_check = None
            r.action_attempts = 0
            r.next_action_at = None
            r.phase_deadline_at = now + timedelta(seconds=self.settings.startup_timeout_seconds)
            of = f"attempt {attempt} of {policy.max_recoveries} in 24 h"
            reclaim = f"Novita reclaimed this spot instance for its capacity (seen at {seen}); recovering it ({of})."
            if chosen == "migrate":
                r.pending_action = Action.MIGRATE
                then = "Migrating it to another node of its cluster once the reclaim ends (its local disk is lost)."
            else:
                self._recreate_columns(r, now)
                then = f"Creating a replacement under the same record ({self._where(r)})."
            await self.writes.change(
                session, r, Status.RECOVERING, reason=Reason.SPOT_RECLAIMED, message=reclaim, event="instance.reclaimed"
            )
            await self.writes.change(session, r, Status.RECOVERING, reason=Reason.SPOT_RECLAIMED, message=then)
            began = {"path": chosen, "attempt": attempt, "reclaimedAt": recovery.state(r).get("reclaimedAt")}
            entry = recorder.system(actions.SPOT_RECOVERY, "recovery.begin", team=r.owner, target=r.id, details=began)
            recorder.add(session, entry, now)

        log.warning("instance_reclaimed_recovering", instance_id=row.id, path=chosen)
        if await self.writes.apply(row, begin) is None:
            return False
        self.writes.observer.observe_reclaim()
        return True

    async def notice(self, row: Instance, upstream: Listed) -> bool:
        """Novita's warning of a reclaim to come: event `instance.reclaim_notice`, with the deadline, once."""
        key = recovery.notice_key(upstream.id, upstream.spot_reclaim_time)
        deadline = _at(upstream.spot_reclaim_time) if upstream.spot_reclaim_time else "any moment"
        now = self.clock.now()
        policy = recovery.policy_of(row, self.settings)
        if self.recovers(row, now):
            then = f"it will then be recovered ({policy.on_reclaim})"
        else:
            then = "it will then stay stopped"
        message = f"Novita will reclaim this spot instance at {deadline}: checkpoint your work now; {then}."

        async def mutate(session: AsyncSession, r: Instance) -> None:
            recovery.note_notice(r, key)
            await self.writes.change(  # a notice changes neither the status nor why it is so
                session, r, Status(r.status), reason=r.status_reason, message=message, event="instance.reclaim_notice"
            )

        return await self.writes.apply(row, mutate) is not None

    # -- migrate ---------------------------------------------------------------------------------

    async def migrate(self, row: Instance, upstream: Listed | None, listing: Listing | None) -> bool:
        """Send the migrate the row owes, once its reclaim has ended; or settle one left without an answer."""
        now = self.clock.now()
        sent = recovery.migrate_sent_at(row)
        if sent is not None:
            settled = await self._in_doubt(row, upstream, listing, sent, now)
            if settled is not None:
                return settled
        if upstream is None or is_leaving(upstream.status):
            return await self.to_recreate(row, "Novita no longer has the reclaimed instance.", keep_current=False)
        if phase_of(upstream.status) != Status.STOPPED:
            return await self.writes.retry_later(
                row, f"Waiting for the reclaim to end before migrating ({upstream.status}).", after=1.0
            )

        async def intent(session: AsyncSession, r: Instance) -> None:
            recovery.migrate_sent(r, now)
            r.next_action_at = now + AMBIGUOUS_CREATE_GRACE  # where a sender killed mid-call leaves it

        current = await self.writes.apply(row, intent)
        if current is None:
            return False
        novita_id = current.novita_instance_id or ""
        try:
            answer = await self.client.migrate_instance(novita_id)
        except RateLimited as exc:  # not carried out: ask again
            return await self._not_sent(current, "Rate limited by Novita; migrating again.", exc.retry_after)
        except NovitaError as exc:
            if exc.status == 0 or exc.status >= 500:  # it may have happened: look before asking again
                log.warning("reconcile_migrate_in_doubt", instance_id=row.id, error=type(exc).__name__)
                return await self.writes.retry_later(
                    current, f"Novita did not answer the migrate ({exc.reason}); looking at what it did.", after=5.0
                )
            return await self.to_recreate(current, f"Novita refused the migrate: {exc.message}", keep_current=True)
        return await self._migrated(current, answer.moved_to, answer.job_id)

    async def _migrated(self, row: Instance, moved_to: str, job_id: str | None) -> bool:
        now = self.clock.now()

        async def mutate(session: AsyncSession, r: Instance) -> None:
            recovery.migrated(r, moved_to, job_id)
            r.novita_instance_id = moved_to
            r.pending_action = None
            r.next_action_at = None
            r.action_attempts = 0
            r.connection_details = None
            r.phase_deadline_at = now + timedelta(seconds=self.settings.startup_timeout_seconds)
            r.status_message = "Novita is migrating the instance to another node."

        log.info("reconcile_migrated", instance_id=row.id, novita_instance_id=moved_to)
        return await self.writes.apply(row, mutate) is not None

    async def _not_sent(self, row: Instance, message: str, after: float | None = None) -> bool:
        async def mutate(session: AsyncSession, r: Instance) -> None:
            recovery.migrate_sent(r, None)
            r.action_attempts += 1
            r.next_action_at = self.clock.now() + timedelta(seconds=after if after is not None else 2.0)
            r.status_message = message

        return await self.writes.apply(row, mutate) is not None

    async def _in_doubt(
        self, row: Instance, upstream: Listed | None, listing: Listing | None, sent: datetime, now: datetime
    ) -> bool | None:
        """A migrate sent without an answer: what Novita shows settles it (True/False: written or not), or
        None when it was not made and may be sent again."""
        if upstream is not None and phase_of(upstream.status) in (Status.STARTING, Status.RUNNING):
            return await self._migrated(row, upstream.id, None)
        moved = listing.by_name.get(recovery.create_name(row)) if listing is not None else None
        if moved is not None and moved.id != row.novita_instance_id and not is_leaving(moved.status):
            return await self._migrated(row, moved.id, None)
        try:
            jobs = [
                job
                async for job in self.client.iter_jobs(type="instanceMigrate", start_time=sent.timestamp() - 60)
                if job.instance_id == row.novita_instance_id
            ]
        except NovitaError:
            return await self.writes.retry_later(row, "Looking up the migrate's job at Novita; retrying.")
        if jobs:
            job = jobs[0]
            if job.state == "fail":
                why = job.error_message or job.error or "its job failed"
                return await self.to_recreate(row, f"Novita's migrate job failed: {why}", keep_current=True)
            return await self.writes.retry_later(row, f"Novita's migrate job is {job.state}.", after=2.0)
        if now < sent + AMBIGUOUS_CREATE_GRACE:
            return await self.writes.retry_later(row, "Waiting for the migrate to show at Novita.", after=2.0)
        return None

    async def migrate_ended(self, row: Instance, upstream: Listed, now: datetime) -> bool:
        """A migrated instance that shows exited again: its job failed (or the listing lags: then wait)."""
        job_id = (row.recovery or {}).get("jobId")
        why = "the instance is exited again"
        if job_id:
            try:
                page = await self.client.list_jobs(job_id=job_id)
            except NovitaError:
                return False
            job = next((j for j in page.jobs if j.id == job_id), None)
            if job is not None and not job.finished:
                return False
            if job is not None and job.state == "fail":
                why = job.error_message or job.error or "its job failed"
        elif now < row.updated_at + _MIGRATE_SHOWS_WITHIN:
            return False
        return await self.to_recreate(row, f"Novita's migrate failed: {why}", keep_current=True)

    # -- recreate --------------------------------------------------------------------------------

    async def to_recreate(self, row: Instance, why: str, *, keep_current: bool) -> bool:
        """The migrate failed (`why`): the attempt goes on as a recreate. With `keep_current` the instance
        the row holds is exited and becomes the one kept until the replacement is ready; else (it may still
        come up) nothing keeps it, and ownership deletes it."""
        now = self.clock.now()

        async def mutate(session: AsyncSession, r: Instance) -> None:
            recovery.to_recreate(r, now, why)
            reclaimed = (r.recovery or {}).get("reclaimedId")
            if keep_current:
                reclaimed = r.novita_instance_id
            elif reclaimed == r.novita_instance_id:
                reclaimed = None
            r.recovery = {**(r.recovery or {}), "reclaimedId": reclaimed}
            self._recreate_columns(r, now)
            r.phase_deadline_at = now + timedelta(seconds=self.settings.startup_timeout_seconds)
            await self.writes.change(
                session,
                r,
                Status.RECOVERING,
                reason=Reason.SPOT_RECLAIMED,
                message=f"{why.rstrip('.')}. Creating a replacement instead ({self._where(r)}).",
            )

        log.warning("reconcile_migrate_failed_recreating", instance_id=row.id, why=why)
        return await self.writes.apply(row, mutate) is not None

    def _recreate_columns(self, r: Instance, now: datetime) -> None:
        """A create of the row's spec under its next upstream name (creating.py sends it)."""
        r.novita_instance_id = None
        r.upstream_status = None
        r.upstream_generation = (r.upstream_generation or 0) + 1
        r.pending_action = Action.CREATE
        r.create_attempted_at = None
        r.next_action_at = None
        r.action_attempts = 0
        r.connection_details = None
        r.capacity_wait_until = now + timedelta(seconds=self.settings.capacity_wait_seconds)

    def _where(self, r: Instance) -> str:
        if r.network_storages:
            return f"in {r.region or 'its cluster'}, where its volumes are"
        if r.strict_region:
            return f"in {r.region or 'its region'} only"
        return f"in {r.region or 'its cluster'} first, then other regions by price"

    async def fall_back_to_on_demand(self, row: Instance) -> bool:
        """No spot capacity anywhere allowed: the replacement is created on-demand (the policy allows it)."""

        async def mutate(session: AsyncSession, r: Instance) -> None:
            recovery.on_demand(r)
            r.billing_mode = "onDemand"
            r.next_action_at = None
            r.create_attempted_at = None
            await self.writes.change(
                session,
                r,
                Status.RECOVERING,
                reason=Reason.SPOT_RECLAIMED,
                message="No spot capacity in any allowed region: creating the replacement on-demand "
                "(fallbackToOnDemand), billed at the on-demand price.",
            )

        return await self.writes.apply(row, mutate) is not None
