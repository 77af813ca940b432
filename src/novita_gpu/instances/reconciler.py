"""The reconciler: moves every instance row towards its goal, level-triggered, safe to crash anywhere.

One tick: claim the rows that need attention (leases, so replicas share them), list Novita's instances
once (paginated: one call per 100 instances, whatever the number of rows), then per row carry out the
pending action or observe and advance the status. Every write is a guarded apply: it only lands if the
row still has the version and lease this worker read, so a stale worker never overwrites newer intent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Row, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.catalog.service import Catalog, CatalogError
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.events import change_status
from novita_gpu.instances.guarded_write import reattach_if_current, show_written, update_if_current
from novita_gpu.instances.lifecycle import (
    CHANGING,
    SETTLED,
    Action,
    Goal,
    Reason,
    Status,
    is_leaving,
    phase_of,
    stop_reason,
)
from novita_gpu.instances.listing import Listing, SharedListing
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.leases import LeasedTable
from novita_gpu.kit.memory import release_free_memory
from novita_gpu.kit.retry_timing import full_jitter
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import Instance
from novita_gpu.kit.workers import PeriodicWorker
from novita_gpu.novita import (
    AmbiguousCreate,
    CreateInstanceRequest,
    EnvVar,
    InsufficientResource,
    InvalidStateChange,
    Listed,
    NetworkStorageMount,
    NotFound,
    NovitaClient,
    NovitaError,
    NovitaInstance,
    RateLimited,
)
from novita_gpu.novita.client import LIST_CONCURRENCY, MAX_CONNECTIONS

log = structlog.get_logger(__name__)

Mutation = Callable[[AsyncSession, Instance], Awaitable[None]]

# After Novita answered a create with an error, look its name up in the list this long before concluding it
# was never made and sending it again. (A create Novita never answered is never sent again: see _create.)
AMBIGUOUS_CREATE_GRACE = timedelta(seconds=20)
# How long a tick waits for the rows it started before it ends; a row whose upstream call takes longer goes
# on by itself (and releases its lease when done), so one slow call never holds up the others.
_TICK_PATIENCE_SECONDS = 0.5
# Upstream statuses in which a start request is satisfied / a stop request is satisfied.
_STARTED = {"toStart", "starting", "pulling", "running", "toRestart", "restarting"}
_STOPPED = {"toStop", "stopping", "exited"}
# Rows the reconciler looks after: not terminated, and known upstream or with an action pending.
_WATCHED = and_(
    Instance.status != Status.TERMINATED,
    or_(
        Instance.novita_instance_id.is_not(None),
        Instance.pending_action.is_not(None),
        Instance.create_attempted_at.is_not(None),
    ),
)
# A create sent and never answered (its process killed, its connection dropped), never sent again: only a
# listing can show its instance. It keeps no worker on fast ticks, each a listing of Novita (100 pages at
# 10,000 instances, every ~1 s for the STARTUP_TIMEOUT_SECONDS it may wait); the slow ticks look for it.
_IN_DOUBT = and_(
    Instance.pending_action == Action.CREATE,
    Instance.novita_instance_id.is_(None),
    Instance.create_attempted_at.is_not(None),
    Instance.next_action_at.is_(None),
)
# The columns of a watched row that say whether it needs attention, a page at a time by id.
_CANDIDATES = (
    select(
        Instance.id,
        Instance.status,
        Instance.novita_instance_id,
        Instance.upstream_status,
        Instance.pending_action,
        Instance.next_action_at,
        Instance.create_attempted_at,
        Instance.phase_deadline_at,
        Instance.updated_at,
    )
    .where(_WATCHED, Instance.id > bindparam("after"))
    .order_by(Instance.id)
    .limit(bindparam("limit"))
)
# Statuses that end by a deadline, and how late past it /health starts to report a row.
_DEADLINED = frozenset({Status.CREATING, Status.STARTING, Status.HEALTH_CHECKING, Status.STOPPING, Status.TERMINATING})
_OVERDUE_GRACE = timedelta(seconds=60)
# Ids per lease UPDATE and load, each a turn of the loop (SQLite builds may allow as few as 999 bound parameters).
_CLAIM_CHUNK = 100
# Rows read per query of the candidates' columns: SQLite runs inline, and one read of every row held the
# loop for all of it; between two reads it serves requests (docs/performance.md).
_CANDIDATES_PAGE = 2_000
# Rows processed at once by one replica, and so leased at once: a row is claimed when a slot is free, not
# when the tick saw it, so rows beyond this wait unleased and another replica may take them.
MAX_ROWS_IN_FLIGHT = MAX_CONNECTIONS
# Of those, at most this many observe or act on instances that exist; while creates wait or are in flight,
# at most _OTHERS_BESIDE_CREATES. Every row's writes queue for the store's one writer (SQLite) in turn, and
# a create's three writes waited behind dozens of status changes each, so upstream creates fell behind a
# burst of accepted ones (docs/performance.md). Status changes catch up once the burst is sent.
_MAX_OTHERS_IN_FLIGHT = MAX_ROWS_IN_FLIGHT * 3 // 4
_OTHERS_BESIDE_CREATES = 8
# Rows of a full pass looked at per tick, besides those that need attention. A pass over every steady row
# in one tick made about a hundred short-lived objects per row, whose scattered survivors kept the
# allocator's arenas from ever being given back (docs/performance.md). At this pace a pass over 10,000
# rows takes 20 ticks (5 minutes when all is steady); up to 500 rows, one tick as before.
_SWEEP_PER_TICK = 500
# Creates accepted here within this long of each other are claimed together, at once (not at the next tick).
_NEW_CREATES_BATCH_SECONDS = 0.02
# Backpressure on creates: while the oldest create accepted here has waited longer than UNSENT_LAG_SECONDS
# to be sent to Novita, a new create's answer waits for that to pass (at most ROOM_WAIT_SECONDS, then it
# is accepted anyway, never refused). A burst beyond what this process can send then slows its clients,
# instead of queueing minutes of accepted creates behind it (docs/performance.md, issue 15).
UNSENT_LAG_SECONDS = 2.0
ROOM_WAIT_SECONDS = 10.0


def _fresh_create(row: Row[Any], now: datetime) -> bool:
    """A create never sent (or known not made) and due: nothing can exist upstream under its unique name,
    so it goes out without waiting for a listing."""
    return (
        row.pending_action == Action.CREATE
        and row.novita_instance_id is None
        and row.create_attempted_at is None
        and row.status == Status.CREATING
        and (row.next_action_at is None or row.next_action_at <= now)
    )


def _needs_attention(row: Row[Any], listing: Listing, now: datetime) -> bool:
    """Whether a tick must lease and process this row: it has an action to carry out or a deadline that
    passed, or Novita shows it otherwise than we last saw it. A row sitting in the same upstream status
    (steady, or pulling its image for minutes) is left alone; the periodic full pass looks at it anyway.
    Stopping and terminating rows are always processed: an accepted action is re-issued on a timer. A row
    written since the listing began is judged by the next one."""
    if row.pending_action is not None or row.novita_instance_id is None:
        return True
    if row.status in (Status.STOPPING, Status.TERMINATING):
        return True
    if row.phase_deadline_at is not None and now >= row.phase_deadline_at:
        return True
    if not listing.knows(row.updated_at):
        return False
    upstream = listing.by_id.get(row.novita_instance_id)
    if upstream is None or upstream.status != row.upstream_status:
        return True
    return bool(upstream.error)


def _priority(row: Row[Any]) -> int:
    """Creates first, then other actions asked for, then what Novita shows changed."""
    if row.pending_action == Action.CREATE:
        return 0
    return 1 if row.pending_action is not None else 2


def _action_done(row: Instance, upstream: Listed | None) -> bool:
    """Whether Novita shows the stop or delete of `row` carried out (or under way), though nobody here saw
    it accepted: a process that sent it was killed, and its lease kept the row from the others meanwhile."""
    if row.status == Status.STOPPING:
        return upstream is not None and phase_of(upstream.status) in (Status.STOPPING, Status.STOPPED)
    return upstream is None or is_leaving(upstream.status)


@dataclass
class _Started:
    """The rows one tick (or one batch of `created()`) started under `token`. While the tick waits, a row
    that finishes is noted in `done` (the tick releases its lease); after, in the reconciler's
    `_finished_late` (the next tick does). Finished tasks are not kept: a full pass starts 10,000."""

    token: str
    waiting: bool = True
    running: set[asyncio.Task[None]] = field(default_factory=set)
    done: list[str] = field(default_factory=list)
    count: int = 0
    changed: int = 0


@dataclass
class TickResult:
    claimed: int = 0
    changed: int = 0
    busy: bool = False


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


class Reconciler(PeriodicWorker):
    name = "reconciler"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        client: NovitaClient,
        catalog: Catalog,
        settings: Settings,
        changes: ChangeFeed,
    ) -> None:
        super().__init__(clock)
        self.db = db
        self.client = client
        self.catalog = catalog
        self.settings = settings
        self.changes = changes
        self.health_checking: Signal[str] = Signal()  # a row reached health_checking: the prober may probe it
        # The pid says which process of a host holds a row's lease (lease_owner), e.g. after a kill -9.
        self.worker_id = f"reconciler-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.leases = LeasedTable(Instance, owner=self.worker_id)
        self.lease_token = ""  # the lease of the rows the current (or last) tick claimed
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._finished_late: dict[str, list[str]] = {}  # lease token -> rows done after their tick ended
        # A full pass not finished yet: watched rows still to look at, taken over the next ticks.
        self._sweep: dict[str, None] = {}
        self._creating: set[str] = set()  # rows in flight that are creates
        self._new: dict[str, float] = {}  # creates accepted here, not started yet: since when (monotonic)
        self._room = asyncio.Event()  # set (and replaced) whenever some of them were started
        self._new_task: asyncio.Task[None] | None = None
        # Replicas (PostgreSQL) share one listing of Novita through the store; one process lists on its own.
        self.shared = (
            None
            if db.is_sqlite
            else SharedListing(
                db, clock, self.worker_id, lease_seconds=settings.lease_seconds, gap_seconds=self.min_gap_seconds
            )
        )
        self._previous_tick_at: datetime | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        self._tick_lock = asyncio.Lock()
        self._next_full_pass = float("-inf")
        self.busy = False

    # -- loop ------------------------------------------------------------------------------------

    @property
    def allowed_gap(self) -> float:
        return self.settings.reconcile_slow_seconds * 3 + 30

    @property
    def min_gap_seconds(self) -> float:  # type: ignore[override]
        # Every create or action wakes the worker; a burst of them shares one tick (and one listing of
        # Novita's instances) per half fast interval, rather than listing once per request.
        return self.settings.reconcile_fast_seconds / 2

    @property
    def retry_seconds(self) -> float:  # type: ignore[override]
        return self.settings.reconcile_fast_seconds

    async def step(self) -> float:
        result = await self.tick()
        self.busy = result.busy
        return self.settings.reconcile_fast_seconds if self.busy else self.settings.reconcile_slow_seconds

    async def finish(self) -> None:
        """Claim nothing more; let rows in flight finish within the shutdown grace, then release every
        lease held, so another replica takes them over at once rather than after LEASE_SECONDS."""
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=self.settings.shutdown_grace_seconds)
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the rows still in flight and release every lease held, so another replica takes over."""
        if self._new_task is not None:
            self._new_task.cancel()
            await asyncio.gather(self._new_task, return_exceptions=True)
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # best effort: a lease not released lapses by itself
            async with self.db.write() as session:
                await session.execute(self.leases.release_mine())

    def created(self, instance_id: str) -> None:
        """A create was accepted by this process: claim and send it now rather than at the next tick. A tick
        takes a second or more at 10,000 instances (most of it listing Novita), and a create needs no
        listing. Ticks still pick up whatever this misses (another replica's creates, a restart)."""
        self._new[instance_id] = self.clock.monotonic()
        if self._new_task is None or self._new_task.done():
            self._new_task = asyncio.create_task(self._start_new(), name="reconciler-new-creates")
        self.wake()

    async def _start_new(self) -> None:
        """Send the creates accepted here, oldest first, as slots free up (a burst waits for slots here,
        in order, rather than the newest taking every slot that frees while older ones wait for a tick)."""
        await asyncio.sleep(_NEW_CREATES_BATCH_SECONDS)  # creates arriving together share one claim
        while self._new and not self.stopping:
            for instance_id in [i for i in self._new if i in self._in_flight]:
                del self._new[instance_id]  # a tick started it meanwhile
            ids = list(self._new)
            # Nobody waits for these rows: each one's lease is given back by the next tick.
            deadline = self.clock.monotonic() + _TICK_PATIENCE_SECONDS
            token = uuid.uuid4().hex
            now = self.clock.now()
            reached = await self._pump(ids, None, _Started(token, waiting=False), now, deadline=deadline)
            for instance_id in ids[:reached]:
                self._new.pop(instance_id, None)
            if reached:
                self._room.set()
                self._room = asyncio.Event()

    def unsent_lag(self) -> float:
        """How long the oldest create accepted here has waited to be sent to Novita (0 when none waits)."""
        oldest = next(iter(self._new.values()), None)
        return 0.0 if oldest is None else max(0.0, self.clock.monotonic() - oldest)

    async def room_for_create(self) -> None:
        """Return once a new create may be accepted: at once, unless the creates accepted here wait longer
        than UNSENT_LAG_SECONDS to be sent; then when they no longer do, or after ROOM_WAIT_SECONDS."""
        loop = asyncio.get_running_loop()
        until = loop.time() + ROOM_WAIT_SECONDS
        while self.unsent_lag() > UNSENT_LAG_SECONDS and (left := until - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._room.wait()

    def busy_rows(self) -> set[str]:
        """Rows whose processing is still in flight (a slow upstream call)."""
        return set(self._in_flight)

    async def tick(self, *, full: bool | None = None, patience: float = _TICK_PATIENCE_SECONDS) -> TickResult:
        """One pass over the rows that need attention (serialised: /sync may call it too).

        A full pass, which processes every watched row whatever it shows, runs when asked (`full=True`)
        and otherwise once per RECONCILE_SLOW_SECONDS: a safety net under `_needs_attention`. The tick
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
        await self._renew()
        await self._release_late()
        candidates = await self._candidates()
        if not candidates and not full:
            return result
        self.lease_token = uuid.uuid4().hex
        started = _Started(self.lease_token)
        deadline = self.clock.monotonic() + patience
        try:
            # Creates go out while Novita is being listed (a listing of 10,000 instances takes a second or
            # more): nothing can exist upstream under a name never sent, so they need none.
            # (Those accepted here are sent in order by `created()`'s loop.)
            creates = [
                c.id
                for c in candidates
                if c.id not in self._in_flight and c.id not in self._new and _fresh_create(c, now)
            ]
            await self._pump(creates, None, started, now, deadline=None)
            try:
                listing, listed_here = await self._list_upstream(candidates, full, now)
            except NovitaError as exc:
                log.warning("reconcile_list_failed", error=type(exc).__name__)
                result.busy = True
            else:
                if listed_here:  # (a listing another replica made had its strays removed by it)
                    await self._remove_strays(listing, candidates)
                watched = {c.id for c in candidates}
                if full and not self._sweep:  # (one not finished goes on)
                    self._sweep = dict.fromkeys(watched)
                sent = set(started.done)  # creates sent while Novita was listed
                waiting_rows = [
                    c for c in candidates if c.id not in self._in_flight and c.id not in self._new and c.id not in sent
                ]
                wanted = [c for c in waiting_rows if _needs_attention(c, listing, now)]
                creating = [c.id for c in wanted if c.pending_action == Action.CREATE]
                others = [c.id for c in sorted(wanted, key=_priority) if c.pending_action != Action.CREATE]
                queued = {c.id for c in wanted}
                # A full pass goes on over the next ticks until every watched row has been looked at.
                for row_id in [i for i in self._sweep if i not in watched]:
                    del self._sweep[row_id]  # terminated meanwhile
                others += [i for i in self._sweep if i not in queued and i not in self._in_flight][:_SWEEP_PER_TICK]
                deadline = self.clock.monotonic() + patience
                await self._pump(creating, listing, started, now, deadline=deadline)
                await self._pump(others, listing, started, now, deadline=deadline, creates=False)
            # Also the creates `created()` started since the last tick: a tick ends with them sent, as it did
            # when only ticks sent creates.
            sent_early = {self._in_flight[i] for i in self._creating} - started.running
            if started.running or sent_early:
                await asyncio.wait(started.running | sent_early, timeout=max(0.0, deadline - self.clock.monotonic()))
        finally:
            started.waiting = False  # from here on, a row that finishes leaves its lease to the next tick's release
            result.claimed, result.changed = started.count, started.changed
            if started.running:
                await self._release(started.done, only_token=started.token)
            elif started.count:
                await self._release_all(started.token)
        if result.busy:
            return result
        async with self.db.read() as session:
            busy = await session.scalar(
                select(Instance.id)
                .where(or_(Instance.status.in_(list(CHANGING)), Instance.pending_action.is_not(None)), ~_IN_DOUBT)
                .limit(1)
            )
        result.busy = busy is not None or bool(self._in_flight) or bool(self._new)
        if full:
            # This tick's transient rows, listing and tasks are freed: give the pages back (memory.py).
            release_free_memory()
        return result

    async def _pump(
        self,
        ids: list[str],
        listing: Listing | None,
        started: _Started,
        now: datetime,
        *,
        deadline: float | None,
        creates: bool = True,
    ) -> int:
        """Claim and start `ids` in order as slots free up (at most MAX_ROWS_IN_FLIGHT rows at once, of which
        _MAX_OTHERS_IN_FLIGHT not creates: `creates=False` for a batch of those). Until `deadline`
        (monotonic) it waits for a slot; after it (or without one) it goes on only while rows finish at once
        (a steady row of a full pass: no call, no write), so a pass over 10,000 steady rows ends in one
        tick. Rows not reached stay unleased for the next tick, or for another replica. Returns how many of
        `ids` it reached (claimed, or found taken)."""
        position = 0
        while position < len(ids):
            free = self._free_slots(creates)
            if free <= 0:
                left = 0.0 if deadline is None else deadline - self.clock.monotonic()
                if left > 0:
                    await asyncio.wait(
                        list(self._in_flight.values()), timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                await asyncio.sleep(0)  # the rows that finish in their first step free their slots
                if self._free_slots(creates) <= 0:
                    return position
                continue
            step = min(free, _CLAIM_CHUNK)
            chunk = [i for i in ids[position : position + step] if i not in self._in_flight]
            position += step
            for row_id in chunk:
                self._sweep.pop(row_id, None)  # claimed here, or held by another replica that looks at it
            for row in await self._claim(now, chunk, started.token):
                if row.id not in self._in_flight:  # a create started meanwhile by `created()`
                    self._start(row, listing, started)
        return position

    def _free_slots(self, creates: bool) -> int:
        free = MAX_ROWS_IN_FLIGHT - len(self._in_flight)
        if creates:
            return free
        limit = _OTHERS_BESIDE_CREATES if self._creating or self._new else _MAX_OTHERS_IN_FLIGHT
        return min(free, limit - (len(self._in_flight) - len(self._creating)))

    def _start(self, row: Instance, listing: Listing | None, started: _Started) -> None:
        """Process `row` in a task of its own (named after the row), which outlives the tick if its
        upstream call is slow."""
        if row.pending_action == Action.CREATE and row.novita_instance_id is None:
            self._creating.add(row.id)
        row_id = row.id

        async def process() -> None:
            changed = False
            try:
                changed = await self._process(row, listing)
            except NovitaError as exc:
                log.warning("reconcile_row_upstream_error", instance_id=row_id, error=type(exc).__name__)
            except Exception:  # one row's fault must not end the others' pass; the next tick retries it
                log.exception("reconcile_row_failed", instance_id=row_id)
            finally:
                started.running.discard(self._in_flight.pop(row_id))
                self._creating.discard(row_id)
                if started.waiting:
                    started.done.append(row_id)
                    started.changed += changed
                else:
                    self._finished_late.setdefault(started.token, []).append(row_id)
                    if not started.running:  # the batch's last row: its leases go back now, not next tick
                        self._release_soon(started.token)

        task = asyncio.create_task(process(), name=row_id)
        self._in_flight[row_id] = task
        started.running.add(task)
        started.count += 1

    # -- leases ----------------------------------------------------------------------------------

    async def _candidates(self) -> list[Row[Any]]:
        """A light read of every watched row: the few columns that say whether it needs attention.

        Only those rows are then leased and loaded, so a tick over 1,000 steady instances (say one
        more is being created) costs a column scan rather than 1,000 leases and ORM loads, which held
        the event loop for tens of milliseconds every fast tick. Rows leased by another replica are read
        too (their claim then fails): they tell which upstream instances belong to a record. Read a page
        at a time (by id), the loop turning between pages."""
        rows: list[Row[Any]] = []
        after = ""
        while True:
            page = list(await self.db.fetch(_CANDIDATES, {"after": after, "limit": _CANDIDATES_PAGE}))
            rows.extend(page)
            if len(page) < _CANDIDATES_PAGE:
                return rows
            after = page[-1].id
            await asyncio.sleep(0)

    def _lease_write(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A write of this worker's own leases (a claim, a renewal). On SQLite a worker's turn: it runs
        inline. On PostgreSQL no turn: each statement yields to the loop anyway, and in a busy replica a
        hundred rows in flight queue for the few turns: a tick's claims and renewals waited behind them
        long enough for leases to lapse under rows still in flight (docs/performance.md, replicas)."""
        return self.db.worker_write() if self.db.is_sqlite else self.db.write()

    async def _claim(self, now: datetime, ids: list[str], token: str) -> list[Instance]:
        """Lease and load `ids` (at most _CLAIM_CHUNK), a lease write: the rows won, under `token`."""
        if not ids:
            return []
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self._lease_write() as session:
            await session.execute(self.leases.claim(ids, _WATCHED, now=now, token=token, until=lease_until))
        async with self.db.read() as session:
            found = await session.execute(select(Instance).where(Instance.id.in_(ids), Instance.lease_token == token))
            return list(found.scalars())

    async def _renew(self) -> None:
        """Extend the leases of rows still in flight from earlier ticks, so no replica takes them over."""
        ids = list(self._in_flight)
        if not ids:
            return
        lease_until = self.clock.now() + timedelta(seconds=self.settings.lease_seconds)
        for start in range(0, len(ids), _CLAIM_CHUNK):
            async with self._lease_write() as session:
                await session.execute(self.leases.renew(ids[start : start + _CLAIM_CHUNK], until=lease_until))

    async def _release_all(self, token: str) -> None:
        async with self.db.write() as session:
            await session.execute(self.leases.release(token))

    def _release_soon(self, token: str) -> None:
        """Release the rows of `token` that finished after their tick, in a task of its own. Rows leased
        until the next tick were held by a replica killed meanwhile for LEASE_SECONDS although done."""
        ids = self._finished_late.pop(token, [])
        if not ids or self.stopping:
            return

        async def release() -> None:
            try:
                await self._release(ids, only_token=token)
            except Exception:  # the leases lapse by themselves
                log.warning("reconcile_release_failed", exc_info=True)

        task = asyncio.create_task(release())
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release_late(self) -> None:
        """Release the rows that finished after their tick stopped waiting (one batch per lease)."""
        late, self._finished_late = self._finished_late, {}
        for token, ids in late.items():
            await self._release(ids, only_token=token)

    async def _release(self, ids: list[str], *, only_token: str) -> None:
        for start in range(0, len(ids), _CLAIM_CHUNK):
            async with self.db.write() as session:
                await session.execute(self.leases.release(only_token, ids[start : start + _CLAIM_CHUNK]))

    async def _apply(self, snap: Instance, mutate: Mutation) -> Instance | None:
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

    async def _update(self, snap: Instance, values: dict[str, Any]) -> Instance | None:
        """`_apply` for a write that only sets columns: one guarded UPDATE, without the ORM's unit of work."""
        values = {**values, "updated_at": self.clock.now()}
        async with self.db.worker_write() as session:
            if not await update_if_current(session, snap, values, lease_token=snap.lease_token):
                return None
        self.changes.pulse(snap.id)
        return show_written(snap, values)

    async def _change(self, session: AsyncSession, row: Instance, to: Status, **kwargs: Any) -> None:
        await change_status(
            session, row, to, now=self.clock.now(), default_webhook_url=self.settings.webhook_url, **kwargs
        )

    # -- health ----------------------------------------------------------------------------------

    async def overdue(self) -> dict[str, Any]:
        """Rows past their deadline (the reconciler should have ended them: something is wrong), and
        failed rows whose stop or delete Novita still has not carried out (an instance that may bill)."""
        now = self.clock.now()
        cut = now - _OVERDUE_GRACE
        doubt_cut = cut - timedelta(seconds=self.settings.startup_timeout_seconds)
        late = or_(
            and_(Instance.status.in_(list(_DEADLINED)), Instance.phase_deadline_at < cut),
            and_(Instance.status != Status.TERMINATED, Instance.create_attempted_at < doubt_cut),
        )
        async with self.db.read() as session:
            overdue = await session.scalar(select(func.count()).select_from(Instance).where(late))
            retrying = await session.scalar(
                select(func.count())
                .select_from(Instance)
                .where(Instance.status == Status.FAILED, Instance.pending_action.is_not(None))
            )
        return {
            "status": "degraded" if overdue or retrying else "up",
            "pastDeadline": overdue or 0,
            "failedActionsRetrying": retrying or 0,
        }

    # -- ownership -------------------------------------------------------------------------------

    async def _remove_strays(self, listing: Listing, watched: Sequence[Row[Any]]) -> None:
        """Delete every listed instance under a record's name that the record does not want: a duplicate
        (the record holds another instance), or a create that completed after its record settled without
        one (stopped, deleted or failed before Novita answered). Instances under names no record has are
        not ours and are left alone."""
        known = {w.novita_instance_id for w in watched if w.novita_instance_id}
        unknown = [u for u in listing.by_id.values() if u.id not in known and u.name and not is_leaving(u.status)]
        if not unknown:
            return
        owners: dict[str, Row[Any]] = {}
        names = sorted({u.name for u in unknown})
        async with self.db.read() as session:
            for start in range(0, len(names), _CLAIM_CHUNK):
                found = await session.execute(
                    select(Instance.id, Instance.upstream_name, Instance.novita_instance_id, Instance.status).where(
                        Instance.upstream_name.in_(names[start : start + _CLAIM_CHUNK])
                    )
                )
                owners.update({r.upstream_name: r for r in found})
        for upstream in unknown:
            owner = owners.get(upstream.name)
            if owner is None:
                continue
            if owner.novita_instance_id is None and owner.status not in SETTLED:
                continue  # the record is waiting for its create to show: it adopts this instance
            if owner.novita_instance_id == upstream.id and owner.status != Status.TERMINATED:
                continue  # the record's own instance (it was adopted since the watched rows were read)
            why = "duplicate" if owner.novita_instance_id else f"unwanted by a {owner.status} record"
            try:
                await self.client.delete_instance(upstream.id)
            except NotFound:
                continue
            except NovitaError as exc:
                log.warning("reconcile_stray_delete_failed", novita_instance_id=upstream.id, error=type(exc).__name__)
                continue
            log.warning("reconcile_stray_deleted", instance_id=owner.id, novita_instance_id=upstream.id, why=why)

    # -- observation -----------------------------------------------------------------------------

    async def _list_upstream(self, rows: Sequence[Row[Any]], full: bool, now: datetime) -> tuple[Listing, bool]:
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
                else listing.by_name.get(row.upstream_name)
            )
        elif row.novita_instance_id is not None:
            if row.pending_action is None and not overdue and row.status not in (Status.STOPPING, Status.TERMINATING):
                return False
            upstream = await self._read_upstream(row.novita_instance_id)
        if row.novita_instance_id is None and upstream is not None:
            adopted = await self._adopt(row, upstream)
            if adopted is None:
                return False
            row = adopted
        if row.novita_instance_id is None:
            return await self._without_upstream(row, now)
        if row.status in (Status.STOPPING, Status.TERMINATING) and overdue and not _action_done(row, upstream):
            return await self._action_overdue(row, upstream)
        if row.pending_action in (Action.START, Action.STOP, Action.DELETE):
            if row.next_action_at is None or row.next_action_at <= now:
                return await self._act(row, upstream)
            return False
        return await self._observe(row, upstream, now)

    async def _read_upstream(self, novita_id: str) -> Listed | None:
        """The instance read by id, None when Novita no longer has it."""
        try:
            return Listed.of(await self.client.get_instance(novita_id))
        except NotFound:
            return None

    async def _adopt(self, row: Instance, upstream: Listed) -> Instance | None:
        """The instance exists upstream under our unique name: record it instead of creating another."""
        log.info("reconcile_adopt", instance_id=row.id, novita_instance_id=upstream.id)

        async def mutate(session: AsyncSession, r: Instance) -> None:
            r.novita_instance_id = upstream.id
            r.create_attempted_at = None
            if r.pending_action == Action.CREATE:
                r.pending_action = None
            wait = self.settings.startup_timeout_seconds
            if r.desired_state != Goal.RUNNING:  # stopped or deleted meanwhile: that action starts now
                wait = self.settings.action_timeout_seconds
                r.next_action_at = None
            r.phase_deadline_at = self.clock.now() + timedelta(seconds=wait)

        return await self._apply(row, mutate)

    async def _without_upstream(self, row: Instance, now: datetime) -> bool:
        if row.create_attempted_at is not None:  # a create went out and Novita has not shown its instance
            if now >= row.create_attempted_at + timedelta(seconds=self.settings.startup_timeout_seconds):
                return await self._give_up_create(row, now)
            if row.next_action_at is None or now < row.next_action_at:
                # Unanswered (it may still complete: never sent again), or answered with an error and
                # still being looked up by name: wait for it to appear, then adopt it.
                return False
        if row.desired_state != Goal.RUNNING:
            return await self._settle_without_instance(row, now, message=None)
        if row.status == Status.CREATING:
            return await self._create(row, now)
        return False

    async def _settle_without_instance(self, row: Instance, now: datetime, *, message: str | None) -> bool:
        """A record stopped or deleted before Novita made its instance ends here, without one."""
        to = Status.TERMINATED if row.desired_state == Goal.TERMINATED else Status.STOPPED

        async def settle(session: AsyncSession, r: Instance) -> None:
            r.pending_action = None
            r.create_attempted_at = None
            r.next_action_at = None
            if to == Status.TERMINATED:
                r.terminated_at = now
            else:
                r.stopped_at = now
            await self._change(session, r, to, reason=r.pending_reason or Reason.USER, message=message)

        return await self._apply(row, settle) is not None

    async def _give_up_create(self, row: Instance, now: datetime) -> bool:
        """Novita never showed the instance of a create it did not answer. It is not sent again (it may
        still complete); should it appear later, its record no longer wants it and it is deleted."""
        waited = f"{self.settings.startup_timeout_seconds:.0f} s"
        later = "it is not sent again, since it may still complete, and an instance appearing later is deleted"
        if row.desired_state != Goal.RUNNING:
            return await self._settle_without_instance(
                row, now, message=f"Novita did not confirm the create within {waited}; {later}."
            )
        return await self._fail(
            row, Reason.STARTUP_TIMEOUT, f"Novita did not confirm the create within {waited}; {later}."
        )

    # -- create ----------------------------------------------------------------------------------

    async def _create(self, row: Instance, now: datetime) -> bool:
        if row.next_action_at is not None and row.next_action_at > now:
            return False
        try:
            offers = await self.catalog.offers(
                row.product_name,
                billing_mode=row.billing_mode,
                gpu_num=row.gpu_num,
                region=row.regions[0] if row.regions else None,
                strict_region=row.strict_region,
                max_price_per_hour=row.max_price_per_hour,
            )
        except CatalogError as exc:
            return await self._fail(row, Reason.UPSTREAM_ERROR, exc.message)
        except NovitaError as exc:
            return await self._retry_later(row, f"Catalog unavailable ({type(exc).__name__}); retrying.")
        current: Instance | None = row
        for offer in offers:
            intent = {
                "create_attempted_at": self.clock.now(),  # from here until an answer, the create is in doubt
                "next_action_at": None,
                "product_id": offer.product_id,
                "cluster_id": offer.cluster_id,
                "region": offer.cluster_name,
                "price_per_hour": round(offer.price_per_hour, 6),
            }
            assert current is not None
            current = await self._update(current, intent)
            if current is None:
                return False
            try:
                novita_id = await self.client.create_instance(self._create_request(current, offer.cluster_id))
            except InsufficientResource:
                log.info("reconcile_no_capacity", instance_id=row.id, cluster=offer.cluster_name)
                continue
            except AmbiguousCreate as exc:
                log.warning(
                    "reconcile_create_ambiguous",
                    instance_id=row.id,
                    unanswered=exc.unanswered,
                    reason=exc.reason,
                    error=exc.message[:200],
                )
                return await self._create_in_doubt(current, exc)
            except RateLimited as exc:
                return await self._create_not_made(current, "Rate limited by Novita; retrying.", exc.retry_after)
            except NovitaError as exc:  # anything but AmbiguousCreate: Novita made nothing
                if exc.status >= 500 or exc.status == 0:
                    return await self._create_not_made(current, f"Novita unavailable ({exc.reason}); retrying.")
                return await self._fail(current, Reason.UPSTREAM_ERROR, f"Novita refused the create: {exc.message}")
            await self._record_created(current, novita_id)
            return True
        if current is None:
            return False
        if row.capacity_wait_until is not None and now >= row.capacity_wait_until:
            return await self._fail(
                current, Reason.NO_CAPACITY, f"No capacity for {row.product_name!r} in any allowed region."
            )
        return await self._create_not_made(
            current, f"No capacity for {row.product_name!r} in any allowed region yet; waiting for some."
        )

    async def _create_in_doubt(self, row: Instance, exc: AmbiguousCreate) -> bool:
        """Novita may have made the instance. Unanswered, the create may even complete later: it is never
        sent again, only looked for (until the startup deadline). Answered with an error, it is looked for
        a short while, then sent again if absent (a late duplicate would be deleted on sight)."""

        async def mutate(session: AsyncSession, r: Instance) -> None:
            if exc.unanswered:
                r.next_action_at = None
                r.status_message = "Novita has not answered the create; waiting for the instance to appear."
            else:
                r.next_action_at = self.clock.now() + AMBIGUOUS_CREATE_GRACE
                r.status_message = f"Novita answered the create with an error ({exc.reason}); looking it up."

        return await self._apply(row, mutate) is not None

    async def _create_not_made(self, row: Instance, message: str, after: float | None = None) -> bool:
        """Novita refused the create or never received it: nothing to look for; try again later."""
        return await self._retry_later(row, message, after, create_made=False)

    def _create_request(self, row: Instance, cluster_id: str) -> CreateInstanceRequest:
        ports = ",".join(f"{p['port']}/{p['type']}" for p in row.ports) or None
        return CreateInstanceRequest(
            name=row.upstream_name,
            product_id=row.product_id or "",
            gpu_num=row.gpu_num,
            rootfs_size=row.rootfs_size,
            image_url=row.image_url,
            image_auth_id=row.image_auth_id,
            cluster_id=cluster_id,
            ports=ports,
            envs=[EnvVar(key=e["key"], value=e["value"]) for e in row.envs],
            command=row.command,
            billing_mode=row.billing_mode,
            kind="gpu",
            network_storages=[
                NetworkStorageMount(id=m["id"], mount_point=m["mountPoint"]) for m in row.network_storages or ()
            ]
            or None,
        )

    async def _record_created(self, row: Instance, novita_id: str) -> None:
        """Persist the new upstream id whatever else changed meanwhile (a user's delete stays pending)."""
        now = self.clock.now()
        created = {
            "novita_instance_id": novita_id,
            "create_attempted_at": None,
            "upstream_status": "toCreate",
            "next_action_at": None,
            "action_attempts": 0,
            "status_message": "Novita is creating the instance.",
            "phase_deadline_at": now + timedelta(seconds=self.settings.startup_timeout_seconds),
            "updated_at": now,
        }
        async with self.db.worker_write() as session:
            # The row as this worker last wrote it when nobody changed it since (nearly always: one UPDATE);
            # else as it is now.
            wrote = row.pending_action == Action.CREATE and await update_if_current(
                session, row, {**created, "pending_action": None}, lease_token=None
            )
            if not wrote:
                r = await session.get(Instance, row.id, populate_existing=True, with_for_update=self.db.locks_rows)
                if r is None or r.novita_instance_id is not None:
                    return
                for key, value in created.items():
                    setattr(r, key, value)
                if r.pending_action == Action.CREATE:
                    r.pending_action = None
                r.version += 1
        self.changes.pulse(row.id)
        log.info("reconcile_created", instance_id=row.id, novita_instance_id=novita_id)

    async def _retry_later(
        self, row: Instance, message: str, after: float | None = None, *, create_made: bool | None = None
    ) -> bool:
        async def mutate(session: AsyncSession, r: Instance) -> None:
            if create_made is False:
                r.create_attempted_at = None
            r.action_attempts += 1
            wait = after if after is not None else full_jitter(r.action_attempts, base=2.0, cap=60.0)
            r.next_action_at = self.clock.now() + timedelta(seconds=wait)
            r.status_message = message

        return await self._apply(row, mutate) is not None

    async def _fail(self, row: Instance, reason: Reason, message: str, *, keep_action: bool = False) -> bool:
        async def mutate(session: AsyncSession, r: Instance) -> None:
            if not keep_action:
                r.pending_action = None
                r.next_action_at = None
            r.create_attempted_at = None
            r.failed_at = self.clock.now()
            await self._change(session, r, Status.FAILED, reason=reason, message=message)

        log.warning("instance_failed", instance_id=row.id, reason=str(reason))
        return await self._apply(row, mutate) is not None

    # -- start / stop / delete -------------------------------------------------------------------

    async def _act(self, row: Instance, upstream: Listed | None) -> bool:
        action = row.pending_action
        novita_id = row.novita_instance_id
        assert novita_id is not None
        seen = upstream.status if upstream else None
        try:
            if action == Action.START:
                await self.client.start_instance(novita_id)
            elif action == Action.STOP:
                await self.client.stop_instance(novita_id)
            else:
                await self.client.delete_instance(novita_id)
        except InvalidStateChange:
            done = (action == Action.START and seen in _STARTED) or (action == Action.STOP and seen in _STOPPED)
            if not done:
                # Refused in this state (a stop while the image is still pulling): ask again, backing off.
                return await self._retry_later(row, f"Waiting for Novita to accept the {action} ({seen}).")
        except NotFound:
            return await self._gone_upstream(row)
        except InsufficientResource:

            async def no_capacity(session: AsyncSession, r: Instance) -> None:
                r.pending_action = None
                r.desired_state = Goal.STOPPED
                await self._change(
                    session,
                    r,
                    Status.STOPPED,
                    reason=Reason.NO_CAPACITY,
                    message="Novita has no capacity to start this instance right now.",
                )

            return await self._apply(row, no_capacity) is not None
        except RateLimited as exc:
            return await self._retry_later(row, "Rate limited by Novita; retrying.", exc.retry_after)
        except NovitaError as exc:
            return await self._retry_later(row, f"Novita {action} failed ({exc.reason}); retrying.")

        async def accepted(session: AsyncSession, r: Instance) -> None:
            r.pending_action = None
            r.action_attempts = 0
            r.next_action_at = None

        log.info("reconcile_action_accepted", instance_id=row.id, action=str(action))
        return await self._apply(row, accepted) is not None

    async def _action_overdue(self, row: Instance, upstream: Listed | None) -> bool:
        """A stop or delete not done by its deadline. A stop Novita refuses because the instance never
        finished booting (an endless image pull) becomes a delete, so it cannot bill forever; otherwise the
        record ends `failed` while the action is still retried, backing off, and auto-stop covers it."""
        seen = upstream.status if upstream else "unknown"
        waited = f"{self.settings.action_timeout_seconds:.0f} s"
        if row.status == Status.STOPPING and (upstream is None or phase_of(seen) in (Status.CREATING, Status.STARTING)):

            async def delete_instead(session: AsyncSession, r: Instance) -> None:
                r.desired_state = Goal.TERMINATED
                r.pending_action = Action.DELETE
                r.pending_reason = Reason.STOP_TIMEOUT
                r.action_attempts = 0
                r.next_action_at = None
                r.phase_deadline_at = self.clock.now() + timedelta(seconds=self.settings.action_timeout_seconds)
                message = f"Novita could not stop it within {waited}: it never finished booting ({seen}). Deleting it."
                await self._change(session, r, Status.TERMINATING, reason=Reason.STOP_TIMEOUT, message=message)

            log.warning("instance_stop_overdue_deleting", instance_id=row.id, upstream_status=seen)
            return await self._apply(row, delete_instead) is not None
        reason = Reason.STOP_TIMEOUT if row.status == Status.STOPPING else Reason.DELETE_TIMEOUT
        verb = "stop" if row.status == Status.STOPPING else "delete"
        return await self._fail(
            row,
            reason,
            f"Novita did not {verb} it within {waited} (it says {seen}); still asking, backing off.",
            keep_action=True,
        )

    async def _gone_upstream(self, row: Instance) -> bool:
        async def mutate(session: AsyncSession, r: Instance) -> None:
            if r.desired_state == Goal.TERMINATED:  # deleted as asked: by a user, or by auto-stop
                reason = Reason(r.pending_reason) if r.pending_reason in set(Reason) else Reason.USER
            else:
                reason = Reason.UPSTREAM_DELETED
            r.pending_action = None
            r.desired_state = Goal.TERMINATED
            r.terminated_at = self.clock.now()
            r.upstream_status = "removed"
            await self._change(session, r, Status.TERMINATED, reason=reason)

        return await self._apply(row, mutate) is not None

    async def _observe(self, row: Instance, upstream: Listed | None, now: datetime) -> bool:
        if upstream is None:
            upstream = await self._read_upstream(row.novita_instance_id or "")
            if upstream is None:
                return await self._gone_upstream(row)
        phase = phase_of(upstream.status)
        stop_done_late = row.status == Status.FAILED and row.desired_state == Goal.STOPPED and phase == Status.STOPPED
        if phase is None or (row.status == Status.FAILED and phase != Status.TERMINATED and not stop_done_late):
            return await self._note_upstream_status(row, upstream.status)
        if phase == Status.TERMINATED:
            return await self._gone_upstream(row)
        if phase == Status.TERMINATING:
            return await self._move(row, upstream, Status.TERMINATING, reason=row.pending_reason or Reason.USER)
        if phase in (Status.CREATING, Status.STARTING):
            return await self._booting(row, upstream, phase, now)
        if phase == Status.STOPPING:
            if row.status == Status.STOPPING:
                return await self._note_upstream_status(row, upstream.status)
            return await self._move(row, upstream, Status.STOPPING, reason=self._stop_reason(row, upstream))
        if phase == Status.STOPPED:
            return await self._exited(row, upstream, now)
        return await self._running(row, upstream, now)

    def _stop_reason(self, row: Instance, upstream: Listed) -> Reason:
        return stop_reason(row.desired_state, row.pending_reason, upstream.spot_reclaimed)

    async def _note_upstream_status(self, row: Instance, upstream_status: str) -> bool:
        if row.upstream_status == upstream_status:
            return False

        async def mutate(session: AsyncSession, r: Instance) -> None:
            r.upstream_status = upstream_status

        return await self._apply(row, mutate) is not None

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
                await self._change(session, r, to, reason=reason, message=message)

        return await self._apply(row, mutate) is not None

    async def _booting(self, row: Instance, upstream: Listed, phase: Status, now: datetime) -> bool:
        if row.desired_state != Goal.RUNNING:
            return await self._note_upstream_status(row, upstream.status)
        if upstream.error:
            return await self._fail(row, Reason.UPSTREAM_ERROR, upstream.error)
        if row.phase_deadline_at is not None and now >= row.phase_deadline_at:
            return await self._fail(
                row,
                Reason.STARTUP_TIMEOUT,
                f"Not running after {self.settings.startup_timeout_seconds:.0f} s (Novita says {upstream.status}).",
            )
        to = Status.CREATING if phase == Status.CREATING and row.status == Status.CREATING else Status.STARTING
        return await self._move(row, upstream, to)

    async def _exited(self, row: Instance, upstream: Listed, now: datetime) -> bool:
        if row.status == Status.STARTING and row.desired_state == Goal.RUNNING and not upstream.spot_reclaimed:
            # A start we asked for may not show yet; only a deadline ends the wait.
            return await self._booting(row, upstream, Status.STARTING, now)
        if row.status == Status.CREATING and upstream.error:
            return await self._fail(row, Reason.UPSTREAM_ERROR, upstream.error)
        reason = self._stop_reason(row, upstream)

        async def stopped(session: AsyncSession, r: Instance) -> None:
            r.desired_state = Goal.STOPPED if r.desired_state == Goal.RUNNING else r.desired_state
            r.stopped_at = r.stopped_at if r.status == Status.STOPPED else now
            r.health_check = None

        if row.status == Status.STOPPED:
            return await self._note_upstream_status(row, upstream.status)
        return await self._move(row, upstream, Status.STOPPED, reason=reason, extra=stopped)

    async def _running(self, row: Instance, upstream: Listed, now: datetime) -> bool:
        if row.desired_state == Goal.STOPPED and row.status == Status.STOPPING:
            return await self._reissue(row, Action.STOP)
        if row.desired_state == Goal.TERMINATED:
            return await self._reissue(row, Action.DELETE)
        if row.status == Status.READY:
            return await self._note_upstream_status(row, upstream.status)
        if row.status == Status.HEALTH_CHECKING and row.phase_deadline_at and now >= row.phase_deadline_at:
            return await self._fail(
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
            if r.status == Status.CREATING:
                # Novita booted it between two looks: still show the documented step, for webhook receivers.
                await self._change(session, r, Status.STARTING, message="Novita reports the instance booting.")
            if r.status != Status.RUNNING:
                r.started_at = now
                await self._change(session, r, Status.RUNNING, message="Novita reports the instance running.")
            r.phase_deadline_at = now + timedelta(seconds=self.settings.health_check_timeout_seconds)
            await self._change(session, r, Status.HEALTH_CHECKING, message="Probing the instance's http ports.")

        if await self._apply(row, running) is None:
            return False
        self.health_checking.emit(row.id)
        return True

    async def _reissue(self, row: Instance, action: Action) -> bool:
        """Novita shows the instance running although we asked otherwise: ask again (level-triggered)."""
        if row.updated_at > self.clock.now() - timedelta(seconds=5):
            return False  # give an accepted action time to show in Novita's list

        async def mutate(session: AsyncSession, r: Instance) -> None:
            r.pending_action = action

        return await self._apply(row, mutate) is not None
