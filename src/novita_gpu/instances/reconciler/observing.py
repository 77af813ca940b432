"""Observing: Novita's listing, and the status moves it shows for rows that hold an instance.

Novita is listed once per tick that needs it (paginated, shared by replicas through the store: listing.py).
What it shows of a row's instance moves the row: booting (`creating`, `starting`, or failed at the startup
deadline), running (its ports read anew, then `health_checking` for the prober), exited (`stopped`, with
why), leaving or gone (`terminating`, `terminated`). Every step of the documented flow is recorded, even
one Novita passed between two looks. Only the upstream status is noted when nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.instances import recovery
from novita_gpu.instances.lifecycle import Action, Goal, Reason, Status, phase_of, stop_reason
from novita_gpu.instances.listing import Listing, SharedListing
from novita_gpu.instances.reconciler.actions import Actions
from novita_gpu.instances.reconciler.recovering import Recovering, stop_note
from novita_gpu.instances.reconciler.writes import Mutation, RowWrites
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import Listed, NotFound, NovitaClient, NovitaInstance
from novita_gpu.novita.client import LIST_CONCURRENCY


def connection_details(upstream: NovitaInstance) -> dict[str, Any]:
    ports = [{"port": p.port, "type": p.type, "endpoint": p.endpoint} for p in upstream.port_mappings]
    details: dict[str, Any] = {"ports": ports}
    ssh = upstream.connect_component_ssh
    if ssh is not None and ssh.ssh_command:
        details["ssh"] = {"command": ssh.ssh_command}
    jupyter = upstream.connect_component_jupyter
    if jupyter is not None and jupyter.address:
        details["jupyter"] = {"url": jupyter.address, "port": jupyter.port}
    return details


def _stopped_outside(reason: Reason, now: datetime, then: str = "Start it to run it again.") -> str | None:
    """What an event says of a stop nobody asked the service for (None: the service's own stop); `then`:
    what comes next after a reclaim."""
    seen = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    if reason == Reason.SPOT_RECLAIMED:
        return (
            f"Novita reclaimed this spot instance for its capacity (seen at {seen}): it is stopped and no longer "
            f"billed. {then}"
        )
    if reason == Reason.UPSTREAM_STOPPED:
        return f"Stopped outside the service, at Novita (seen at {seen}). Start it to run it again."
    return None


@dataclass(eq=False)
class Observing:
    """`shared`: the listing replicas share through the store (PostgreSQL); None when this process lists on
    its own (SQLite). `health_checking` is emitted with a row's id when it reaches `health_checking`."""

    writes: RowWrites
    actions: Actions
    client: NovitaClient
    clock: Clock
    settings: Settings
    shared: SharedListing | None
    health_checking: Signal[str]
    recovering: Recovering
    _previous_tick_at: datetime | None = field(default=None, init=False)

    # -- Novita's listing -------------------------------------------------------------------------

    async def listing(self, rows: Sequence[Row[Any]], full: bool, now: datetime) -> tuple[Listing, bool]:
        """Novita's instances, when a row may be found there; and on every full pass whatever the rows, so
        a create that completes long after its record settled is still seen (and removed). With replicas,
        the one listing they share when it began after this worker's previous tick (or the latest, while
        another replica lists). Also says whether it was listed here."""
        previous, self._previous_tick_at = self._previous_tick_at, now
        if not full and not any(r.novita_instance_id or r.create_attempted_at for r in rows):
            return Listing(taken_at=now), False
        if self.shared is None:
            return await self._list_novita(), True
        newer_than = previous or now - timedelta(seconds=self.settings.reconcile_slow_seconds)
        return await self.shared.get(newer_than, self._list_novita)

    async def _list_novita(self) -> Listing:
        listing = Listing(taken_at=self.clock.now())
        async for upstream in self.client.iter_listed(page_size=100, concurrency=LIST_CONCURRENCY):
            listing.add(upstream)
        return listing

    async def read_upstream(self, novita_id: str) -> Listed | None:
        """The instance read by id, None when Novita no longer has it."""
        try:
            return Listed.of(await self.client.get_instance(novita_id))
        except NotFound:
            return None

    # -- status moves -----------------------------------------------------------------------------

    async def observe(self, row: Instance, upstream: Listed | None, now: datetime) -> bool:
        """Move `row` to what Novita shows of its instance (read by id when the listing did not show it)."""
        if upstream is None:
            upstream = await self.read_upstream(row.novita_instance_id or "")
            if upstream is None:
                if recovery.path(row) == "migrate" and row.desired_state == Goal.RUNNING:
                    why = "Novita no longer has the migrated instance."
                    return await self.recovering.to_recreate(row, why, keep_current=False)
                return await self.writes.gone_upstream(row)
        if (
            upstream.spot_notified
            and row.desired_state == Goal.RUNNING
            and not recovery.noticed(row, recovery.notice_key(upstream.id, upstream.spot_reclaim_time))
        ):
            return await self.recovering.notice(row, upstream)
        phase = phase_of(upstream.status)
        stop_done_late = row.status == Status.FAILED and row.desired_state == Goal.STOPPED and phase == Status.STOPPED
        if phase is None or (row.status == Status.FAILED and phase != Status.TERMINATED and not stop_done_late):
            return await self._note_upstream_status(row, upstream.status)
        if phase == Status.TERMINATED:
            return await self.writes.gone_upstream(row)
        if phase == Status.TERMINATING:
            return await self._move(row, upstream, Status.TERMINATING, reason=row.pending_reason or Reason.USER)
        if phase in (Status.CREATING, Status.STARTING):
            return await self._booting(row, upstream, phase, now)
        if phase == Status.STOPPING:
            if row.status in (Status.STOPPING, Status.RECOVERING):
                return await self._note_upstream_status(row, upstream.status)
            reason = self._stop_reason(row, upstream)
            if reason == Reason.SPOT_RECLAIMED and self.recovering.recovers(row, now):
                return await self.recovering.reclaimed(row, upstream, now)
            return await self._move(
                row, upstream, Status.STOPPING, reason=reason, message=self._stopped_outside(row, reason, now)
            )
        if phase == Status.STOPPED:
            return await self._exited(row, upstream, now)
        return await self._running(row, upstream, now)

    def _stop_reason(self, row: Instance, upstream: Listed) -> Reason:
        return stop_reason(row.desired_state, row.pending_reason, upstream.spot_reclaimed)

    def _stopped_outside(self, row: Instance, reason: Reason, now: datetime) -> str | None:
        if reason == Reason.SPOT_RECLAIMED and row.billing_mode == "spot":
            return _stopped_outside(reason, now, stop_note(row, self.settings, now))
        return _stopped_outside(reason, now)

    async def _note_upstream_status(self, row: Instance, upstream_status: str) -> bool:
        if row.upstream_status == upstream_status:
            return False

        async def mutate(session: AsyncSession, r: Instance) -> None:
            r.upstream_status = upstream_status

        return await self.writes.apply(row, mutate) is not None

    async def _move(
        self,
        row: Instance,
        upstream: Listed,
        to: Status,
        *,
        reason: str | None = None,
        message: str | None = None,
        extra: Mutation | None = None,
    ) -> bool:
        if row.status == to and extra is None:
            return await self._note_upstream_status(row, upstream.status)

        async def mutate(session: AsyncSession, r: Instance) -> None:
            r.upstream_status = upstream.status
            if extra is not None:
                await extra(session, r)
            if r.status != to:
                await self.writes.change(session, r, to, reason=reason, message=message)

        return await self.writes.apply(row, mutate) is not None

    async def _booting(self, row: Instance, upstream: Listed, phase: Status, now: datetime) -> bool:
        if row.desired_state != Goal.RUNNING:
            return await self._note_upstream_status(row, upstream.status)
        late = row.phase_deadline_at is not None and now >= row.phase_deadline_at
        waited = f"Not running after {self.settings.startup_timeout_seconds:.0f} s (Novita says {upstream.status})."
        if recovery.path(row) == "migrate" and (upstream.error or late):  # the migrated instance may still boot
            return await self.recovering.to_recreate(row, upstream.error or waited, keep_current=False)
        if upstream.error:
            return await self.writes.fail(row, Reason.UPSTREAM_ERROR, upstream.error)
        if late:
            return await self.writes.fail(row, Reason.STARTUP_TIMEOUT, waited)
        to = Status.CREATING if phase == Status.CREATING and row.status == Status.CREATING else Status.STARTING
        path = recovery.path(row)
        message = None if path is None else f"Recovering ({path}): Novita reports the instance {upstream.status}."
        return await self._move(row, upstream, to, message=message)

    async def _exited(self, row: Instance, upstream: Listed, now: datetime) -> bool:
        if recovery.path(row) == "migrate" and row.desired_state == Goal.RUNNING:
            return await self.recovering.migrate_ended(row, upstream, now)  # the migrate failed (or lags)
        if row.status == Status.RECOVERING and row.desired_state == Goal.RUNNING:
            return await self._note_upstream_status(row, upstream.status)
        if (
            upstream.spot_reclaimed
            and self._stop_reason(row, upstream) == Reason.SPOT_RECLAIMED
            and self.recovering.recovers(row, now)
        ):
            return await self.recovering.reclaimed(row, upstream, now)
        if row.status == Status.STARTING and row.desired_state == Goal.RUNNING and not upstream.spot_reclaimed:
            # A start we asked for may not show yet; only a deadline ends the wait.
            return await self._booting(row, upstream, Status.STARTING, now)
        if row.status == Status.CREATING and upstream.error:
            return await self.writes.fail(row, Reason.UPSTREAM_ERROR, upstream.error)
        reason = self._stop_reason(row, upstream)
        message = self._stopped_outside(row, reason, now)

        async def stopped(session: AsyncSession, r: Instance) -> None:
            self.writes.end_recovery(r, "failed", message or "Stopped at Novita.")
            r.desired_state = Goal.STOPPED if r.desired_state == Goal.RUNNING else r.desired_state
            r.stopped_at = r.stopped_at if r.status == Status.STOPPED else now
            r.health_check = None
            if message is not None and r.status not in (Status.STOPPING, Status.STOPPED):
                # Novita stopped it between two looks: still show the documented step, for webhook receivers.
                await self.writes.change(session, r, Status.STOPPING, reason=reason, message=message)

        if row.status == Status.STOPPED:
            return await self._note_upstream_status(row, upstream.status)
        return await self._move(row, upstream, Status.STOPPED, reason=reason, message=message, extra=stopped)

    async def _running(self, row: Instance, upstream: Listed, now: datetime) -> bool:
        if row.desired_state == Goal.STOPPED and row.status == Status.STOPPING:
            return await self.actions.reissue(row, Action.STOP)
        if row.desired_state == Goal.TERMINATED:
            return await self.actions.reissue(row, Action.DELETE)
        if row.status == Status.READY:
            return await self._note_upstream_status(row, upstream.status)
        if row.status == Status.HEALTH_CHECKING and row.phase_deadline_at and now >= row.phase_deadline_at:
            return await self.writes.fail(
                row,
                Reason.HEALTH_CHECK_TIMEOUT,
                f"The instance's http ports did not answer within {self.settings.health_check_timeout_seconds:.0f} s.",
            )
        if row.status == Status.HEALTH_CHECKING:
            return await self._note_upstream_status(row, upstream.status)  # the prober takes it from here
        # Read anew on every boot: Novita may map the ports anew at each start (so may the built-in
        # emulator, served where it is now), and probing last boot's URLs would wait out the deadline.
        details = connection_details(await self.client.get_instance(upstream.id))

        async def running(session: AsyncSession, r: Instance) -> None:
            r.upstream_status = upstream.status
            r.connection_details = details
            r.health_check = None
            if r.status in (Status.CREATING, Status.RECOVERING):
                # Novita booted it between two looks: still show the documented step, for webhook receivers.
                await self.writes.change(session, r, Status.STARTING, message="Novita reports the instance booting.")
            if r.status != Status.RUNNING:
                r.started_at = now
                await self.writes.change(session, r, Status.RUNNING, message="Novita reports the instance running.")
            r.phase_deadline_at = now + timedelta(seconds=self.settings.health_check_timeout_seconds)
            await self.writes.change(session, r, Status.HEALTH_CHECKING, message="Probing the instance's http ports.")

        if await self.writes.apply(row, running) is None:
            return False
        self.health_checking.emit(row.id)
        return True
