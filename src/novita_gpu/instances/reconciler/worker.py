"""The reconciler's worker: one tick, which rows it takes, and which phase each row is in.

One tick: renew the leases of rows still in flight and give back those done; read the watched rows' few
columns (attention.py); send the fresh creates at once while Novita is listed (observing.py); delete the
instances under our names that no record wants (ownership.py); then claim and process the rows that need
attention, creates first, each in a task of its own, as slots free up (the leased-work runner, kit/runner.py),
waiting at most `patience` for them. Each row goes to its phase: creating.py (no upstream instance yet),
actions.py (a start, stop or delete owed, or overdue), observing.py (what Novita shows moves the row).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from novita_gpu.catalog.service import Catalog
from novita_gpu.instances import recovery
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.lifecycle import Action, Status
from novita_gpu.instances.listing import Listing, SharedListing
from novita_gpu.instances.reconciler.actions import Actions, action_done
from novita_gpu.instances.reconciler.attention import (
    WATCHED,
    FullPass,
    fresh_create,
    needs_attention,
    priority,
    read_candidates,
    work_left,
)
from novita_gpu.instances.reconciler.creating import Creating
from novita_gpu.instances.reconciler.new_creates import NewCreates
from novita_gpu.instances.reconciler.observing import Observing
from novita_gpu.instances.reconciler.overdue import overdue_report
from novita_gpu.instances.reconciler.ownership import remove_strays
from novita_gpu.instances.reconciler.recovering import Recovering
from novita_gpu.instances.reconciler.writes import RowWrites
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.memory import release_free_memory
from novita_gpu.kit.runner import Batch, LeaseRunner, Work
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import Instance
from novita_gpu.kit.workers import StoreWorker
from novita_gpu.novita import Listed, NovitaClient, NovitaError
from novita_gpu.novita.client import MAX_CONNECTIONS

log = structlog.get_logger(__name__)

# How long a tick waits for the rows it started before it ends; a row whose upstream call takes longer goes
# on by itself (and releases its lease when done), so one slow call never holds up the others.
_TICK_PATIENCE_SECONDS = 0.5
# Rows processed at once by one replica, and so leased at once (one upstream connection each).
MAX_ROWS_IN_FLIGHT = MAX_CONNECTIONS
# Of those, at most this many observe or act on instances that exist; while creates wait or are in flight,
# at most _OTHERS_BESIDE_CREATES. Every row's writes queue for the store's one writer (SQLite) in turn, and
# a create's writes waited behind many status changes each, so upstream creates fell behind a burst of
# accepted ones (docs/performance.md). Status changes catch up once the burst is sent.
_MAX_OTHERS_IN_FLIGHT = MAX_ROWS_IN_FLIGHT * 3 // 4
_OTHERS_BESIDE_CREATES = 8
# How long after a noticed reclaim is due the reconciler looks again (Novita's stop takes a moment to show).
_AFTER_RECLAIM_SECONDS = 1.0


@dataclass
class TickResult:
    claimed: int = 0
    changed: int = 0
    busy: bool = False
    # Which rows (every key's): POST /api/instances/sync answers in the caller's own (instances/sync.py).
    claimed_ids: list[str] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)


class Reconciler(StoreWorker):
    name = "reconciler"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        client: NovitaClient,
        catalog: Catalog,
        settings: Settings,
        changes: ChangeFeed,
        observer: recovery.Observer | None = None,
    ) -> None:
        super().__init__(db, clock, settings, settings.reconcile_slow_seconds)
        self.retry_seconds = settings.reconcile_fast_seconds  # a tick that raised is retried at the fast pace
        self.client = client
        self.changes = changes
        self.health_checking: Signal[str] = Signal()  # a row reached health_checking: the prober may probe it
        self.runner: LeaseRunner[Instance] = LeaseRunner.for_worker(
            db,
            clock,
            Instance,
            "reconciler",
            lease_seconds=settings.lease_seconds,
            slots=MAX_ROWS_IN_FLIGHT,
            name="reconcile",
        )
        self.worker_id = self.runner.owner
        self._creating: set[str] = set()  # rows in flight that are creates
        self._full_pass = FullPass()
        self._tick_lock = asyncio.Lock()
        self._next_full_pass = float("-inf")
        self._reclaim_due: int | None = None  # the earliest reclaim Novita gave notice of (unix seconds)
        # Replicas (PostgreSQL) share one listing of Novita through the store; one process lists on its own.
        shared = (
            None
            if db.is_sqlite
            else SharedListing(
                db, clock, self.worker_id, lease_seconds=settings.lease_seconds, gap_seconds=self.min_gap_seconds
            )
        )
        writes = RowWrites(db, clock, settings, changes, observer or recovery.Unobserved())
        self.recovering = Recovering(writes, client, clock, settings)
        self.creating = Creating(writes, db, changes, client, catalog, clock, settings, self.recovering)
        self.actions = Actions(writes, client, clock, settings)
        self.observing = Observing(
            writes, self.actions, client, clock, settings, shared, self.health_checking, self.recovering
        )
        self.new_creates = NewCreates(
            clock, self.runner.in_flight, self._send_new, lambda: self.stopping, patience=_TICK_PATIENCE_SECONDS
        )

    # -- loop ------------------------------------------------------------------------------------

    @property
    def min_gap_seconds(self) -> float:  # type: ignore[override]
        # Every create or action wakes the worker; a burst of them shares one tick (and one listing of
        # Novita's instances) per half fast interval, rather than listing once per request.
        return self.settings.reconcile_fast_seconds / 2

    async def step(self) -> float:
        busy = (await self.tick()).busy
        wait = self.settings.reconcile_fast_seconds if busy else self.settings.reconcile_slow_seconds
        if self._reclaim_due is not None:
            # Novita gave notice of a reclaim: look again just after it is due, so the stop is seen then
            # (and the recovery starts) rather than at the next slow tick. One listing per reclaim wave.
            until = self._reclaim_due - self.clock.now().timestamp() + _AFTER_RECLAIM_SECONDS
            if until > 0:
                wait = min(wait, max(self.settings.reconcile_fast_seconds, until))
            else:  # this tick looked after it was due
                self._reclaim_due = None
        return wait

    def stop(self) -> None:
        self.runner.stop()
        super().stop()

    async def finish(self) -> None:
        """Claim nothing more; let rows in flight finish within the shutdown grace, then release every
        lease held, so another replica takes them over at once rather than after LEASE_SECONDS."""
        await self.runner.drain(self.settings.shutdown_grace_seconds)
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the rows still in flight and release every lease held, so another replica takes over."""
        await self.new_creates.aclose()
        await self.runner.aclose()

    # -- creates accepted here (new_creates.py) ---------------------------------------------------

    def created(self, instance_id: str) -> None:
        """A create was accepted by this process: claim and send it now rather than at the next tick."""
        self.new_creates.add(instance_id)
        self.wake()

    def unsent_lag(self) -> float:
        return self.new_creates.lag()

    async def room_for_create(self) -> None:
        await self.new_creates.room()

    async def _send_new(self, ids: list[str], deadline: float) -> int:
        # Nobody waits for these rows: each one's lease is given back once it is done.
        batch = self.runner.batch(waited_on=False)
        return await self._pump(ids, None, batch, self.clock.now(), deadline=deadline)

    # -- ticks -----------------------------------------------------------------------------------

    def busy_rows(self) -> set[str]:
        """Rows whose processing is still in flight (a slow upstream call)."""
        return set(self.runner.in_flight)

    async def overdue(self) -> dict[str, Any]:
        """/health's `instances` check (overdue.py)."""
        return await overdue_report(self.db, self.clock, self.settings)

    async def tick(self, *, full: bool | None = None, patience: float = _TICK_PATIENCE_SECONDS) -> TickResult:
        """One pass over the rows that need attention (serialised: /sync may call it too).

        A full pass, which processes every watched row whatever it shows, runs when asked (`full=True`)
        and otherwise once per RECONCILE_SLOW_SECONDS: a safety net under `needs_attention`. The tick
        waits `patience` seconds for the rows it started; slower ones go on beyond it."""
        async with self._tick_lock:
            monotonic = self.clock.monotonic()
            if full is None:
                full = monotonic >= self._next_full_pass
            if full:
                self._next_full_pass = monotonic + self.settings.reconcile_slow_seconds
            return await self._tick(full, patience)

    async def _tick(self, full: bool, patience: float) -> TickResult:
        now = self.clock.now()
        self.last_run_at = now
        result = TickResult()
        if self.stopping:  # shutting down: claim nothing more
            return result
        await self.runner.renew()
        await self.runner.release_late()
        candidates = await read_candidates(self.db)
        if not candidates and not full:
            return result
        in_flight, unsent = self.runner.in_flight, self.new_creates.unsent
        batch = self.runner.batch()
        deadline = self.clock.monotonic() + patience
        try:
            # Creates go out while Novita is being listed (which takes long with many instances): nothing
            # can exist upstream under a name never sent, so they need no listing.
            # (Those accepted here are sent in order by new_creates.py.)
            creates = [
                c.id for c in candidates if c.id not in in_flight and c.id not in unsent and fresh_create(c, now)
            ]
            await self._pump(creates, None, batch, now, deadline=None)
            try:
                listing, listed_here = await self.observing.listing(candidates, full, now)
            except NovitaError as exc:
                log.warning("reconcile_list_failed", error=type(exc).__name__)
                result.busy = True
            else:
                if listing.by_id:  # (an empty one: Novita was not listed this tick)
                    self._reclaim_due = listing.next_reclaim()
                if listed_here:  # (a listing another replica made had its strays removed by it)
                    await remove_strays(self.db, self.client, listing, candidates)
                watched = {c.id for c in candidates}
                if full:
                    self._full_pass.begin(watched)
                sent = set(batch.done)  # creates sent while Novita was listed
                waiting_rows = [
                    c for c in candidates if c.id not in in_flight and c.id not in unsent and c.id not in sent
                ]
                wanted = [c for c in waiting_rows if needs_attention(c, listing, now)]
                creating = [c.id for c in wanted if c.pending_action == Action.CREATE]
                others = [c.id for c in sorted(wanted, key=priority) if c.pending_action != Action.CREATE]
                queued = {c.id for c in wanted}
                # A full pass goes on over the next ticks until every watched row has been looked at.
                others += self._full_pass.next_rows(watched, skip=lambda i: i in queued or i in in_flight)
                deadline = self.clock.monotonic() + patience
                await self._pump(creating, listing, batch, now, deadline=deadline)
                await self._pump(others, listing, batch, now, deadline=deadline, creates=False)
            # Also the creates new_creates.py started since the last tick: a tick ends with them sent, as it
            # did when only ticks sent creates.
            sent_early = {in_flight[i] for i in self._creating} - batch.running
            if batch.running or sent_early:
                await asyncio.wait(batch.running | sent_early, timeout=max(0.0, deadline - self.clock.monotonic()))
        finally:
            result.claimed, result.changed = batch.started, batch.changed
            result.claimed_ids, result.changed_ids = list(batch.started_ids), list(batch.changed_ids)
            # From here on, a row that finishes leaves its lease to the runner's release.
            await self.runner.settle(batch)
        if result.busy:
            return result
        result.busy = await work_left(self.db) or bool(in_flight) or bool(unsent)
        if full:
            # This tick's transient rows, listing and tasks are freed: give the pages back (memory.py).
            release_free_memory()
        return result

    async def _pump(
        self,
        ids: list[str],
        listing: Listing | None,
        batch: Batch,
        now: datetime,
        *,
        deadline: float | None,
        creates: bool = True,
    ) -> int:
        """Claim and start `ids` in order as slots free up (kit/runner.py's pump), at most
        _MAX_OTHERS_IN_FLIGHT of them not creates (`creates=False` for a batch of those). Rows not reached
        stay unleased for the next tick, or for another replica. Returns how many of `ids` it reached."""
        return await self.runner.pump(
            ids,
            batch,
            now=now,
            where=(WATCHED,),
            deadline=deadline,
            work_for=lambda row: self._work_for(row, listing),
            room=lambda: self._free_slots(creates),
            on_claim=self._full_pass.seen,  # claimed here, or held by another replica that looks at it
        )

    def _free_slots(self, creates: bool) -> int:
        free = self.runner.free_slots()
        if creates:
            return free
        limit = _OTHERS_BESIDE_CREATES if self._creating or self.new_creates.unsent else _MAX_OTHERS_IN_FLIGHT
        return min(free, limit - (len(self.runner.in_flight) - len(self._creating)))

    def _work_for(self, row: Instance, listing: Listing | None) -> Work:
        """The work on one claimed row, run in a task of its own by the runner."""
        if row.pending_action == Action.CREATE and row.novita_instance_id is None:
            self._creating.add(row.id)

        async def process() -> bool:
            try:
                return await self._process(row, listing)
            except NovitaError as exc:
                log.warning("reconcile_row_upstream_error", instance_id=row.id, error=type(exc).__name__)
            except Exception:  # one row's fault must not end the others' pass; the next tick retries it
                log.exception("reconcile_row_failed", instance_id=row.id)
            finally:
                self._creating.discard(row.id)
            return False

        return process

    # -- one row ---------------------------------------------------------------------------------

    async def _process(self, row: Instance, listing: Listing | None) -> bool:
        """Carry out or observe one row. Without a listing (a create started before it came), or when the
        row was written after the listing began, what Novita shows of it is read by id when an action or a
        deadline needs it; a mere observation waits for the next listing."""
        now = self.clock.now()
        overdue = row.phase_deadline_at is not None and now >= row.phase_deadline_at
        upstream: Listed | None = None
        if listing is not None and listing.knows(row.updated_at):
            upstream = (
                listing.by_id.get(row.novita_instance_id)
                if row.novita_instance_id
                else listing.by_name.get(recovery.create_name(row))
            )
        elif row.novita_instance_id is not None:
            if row.pending_action is None and not overdue and row.status not in (Status.STOPPING, Status.TERMINATING):
                return False
            upstream = await self.observing.read_upstream(row.novita_instance_id)
        if row.novita_instance_id is None and upstream is not None:
            adopted = await self.creating.adopt(row, upstream)
            if adopted is None:
                return False
            row = adopted
        if row.novita_instance_id is None:
            return await self.creating.without_upstream(row, now)
        if row.status in (Status.STOPPING, Status.TERMINATING) and overdue and not action_done(row, upstream):
            return await self.actions.overdue(row, upstream)
        if row.pending_action in (Action.START, Action.STOP, Action.DELETE, Action.MIGRATE):
            if row.next_action_at is not None and row.next_action_at > now:
                return False
            if row.pending_action == Action.MIGRATE:
                return await self.recovering.migrate(row, upstream, listing)
            return await self.actions.act(row, upstream)
        return await self.observing.observe(row, upstream, now)
