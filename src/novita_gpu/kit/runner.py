"""Leased work, written once: rows claimed under a lease, each worked on in a task of its own, kept while
the work is in flight, given back when it is done or the process stops.

A worker whose rows several replicas share does the same things around its own work, and they live here:

- **Claim** (`claim`, `pump`): one compare-and-set UPDATE leases the free rows of a chunk under a batch's
  token until now + the lease period (leases.py); the rows won are read back by that token. A row another
  replica holds is not won, and is not worked on here.
- **Slots** (`slots`, `free_slots`, `pump`): at most `slots` rows are in flight. A row is claimed when a
  slot is free, not when it was found, so rows beyond wait unleased, for a later pump or another replica.
- **Renew** (`renew`): the leases of every row still in flight are extended, so a slow call (an upstream
  request that hangs until its timeout) never loses its row to another replica. A worker that looks often
  (`renew(ahead=...)`) extends only the leases that run low, and spends no write while none does.
- **Release** (`settle`, `release_late`, `aclose`): rows done are given back, so another replica may take
  them at once rather than after the lease period; at shutdown (`drain`, then `aclose`) the work still in
  flight is cancelled and every row held is given back.
- **The guarded write** (`held`, `update_held`): a write to a leased row names the token it was claimed
  under, and lands only while the row still holds it. A row whose lease lapsed and that another replica
  claimed belongs to that replica: the late write changes nothing and its worker drops what it was doing.

Rows are claimed in batches (`Batch`): each claim of a batch uses its token. While the claimer waits on a
batch (a tick waiting for the rows it started), rows that finish are noted and the claimer gives them back
with `settle`. A row that finishes after nobody waits any more is given back by the runner: all of a
batch's late rows in one write once its last running row is done, else by the next `release_late`. Work
whose own last write gives its row back (an outbox row's outcome clears its lease in the same UPDATE) runs
in a batch that the runner never releases (`release_when_done=False`), so no write is spent on it.

On SQLite a claim or renewal takes a worker's turn (`Database.worker_write`), since SQLite runs inline and
a burst of lease writes would hold the API up; on PostgreSQL it takes none (each statement yields to the
loop anyway), so that lease writes never queue behind the rows' own writes while leases run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, cast

import structlog
from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped

from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.leases import LeasedTable

log = structlog.get_logger(__name__)

# Ids per lease statement (claim, load, renew, release): SQLite builds may allow as few as 999 bound parameters.
CLAIM_CHUNK = 100


class LeasedRow(Protocol):
    """A mapped row with a string primary key `id` (and the lease columns leases.py names)."""

    id: Mapped[str]


RowT = TypeVar("RowT", bound=LeasedRow)
# The work on one row: True when it changed something (counted in its batch while the claimer waits).
Work = Callable[[], Awaitable[bool]]


@dataclass(eq=False)
class Batch:
    """Rows claimed under one lease token (see the module's doc for who gives them back)."""

    token: str
    waited_on: bool = True
    release_when_done: bool = True  # False: each row's work gives its lease back itself
    running: set[asyncio.Task[None]] = field(default_factory=set)
    done: list[str] = field(default_factory=list)  # rows finished while waited on, not given back yet
    started_ids: list[str] = field(default_factory=list)  # rows started under this batch
    changed_ids: list[str] = field(default_factory=list)  # rows whose work changed something, while waited on

    @property
    def started(self) -> int:
        return len(self.started_ids)

    @property
    def changed(self) -> int:
        return len(self.changed_ids)


class LeaseRunner(Generic[RowT]):
    """Runs work on rows of one leased table, at most `slots` rows at once (see the module's doc)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        leases: LeasedTable,
        *,
        lease_seconds: float,
        slots: int,
        name: str,
        lease_writes_take_turns: bool = True,
    ) -> None:
        """`name` prefixes this runner's log events (`<name>_row_failed`, `<name>_release_failed`).
        `lease_writes_take_turns=False`: a claim or renewal does not wait for a worker's turn on SQLite, for
        a runner whose few lease writes (one claim per pass) are latency a user sees (webhooks)."""
        self.lease_writes_take_turns = lease_writes_take_turns
        self.db = db
        self.clock = clock
        self.leases = leases
        self.lease = timedelta(seconds=lease_seconds)
        self.slots = slots
        self.name = name
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._token_of: dict[str, str] = {}  # the batch token each row in flight was claimed under
        self._leased_until: dict[str, datetime] = {}  # when each row in flight's lease ends, as last set here
        self._finished_late: dict[str, list[str]] = {}  # token -> rows done after their batch stopped waiting
        self._releasing: set[asyncio.Task[None]] = set()
        self._stopping = False

    @classmethod
    def for_worker(
        cls, db: Database, clock: Clock, model: Any, worker: str, *, lease_seconds: float, slots: int, name: str
    ) -> LeaseRunner[Any]:
        """A runner whose leases name this process, `<worker>-<pid>-<8 hex>` in `lease_owner` (which process
        of a host holds a row, e.g. after a kill -9), so that all it holds is given back in one statement."""
        owner = f"{worker}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return cls(db, clock, LeasedTable(model, owner=owner), lease_seconds=lease_seconds, slots=slots, name=name)

    @property
    def owner(self) -> str:
        """The `lease_owner` this runner's claims write."""
        return self.leases.owner or ""

    # -- batches and slots ------------------------------------------------------------------------

    def batch(self, *, waited_on: bool = True, release_when_done: bool = True) -> Batch:
        """A new batch under a token of its own."""
        return Batch(uuid.uuid4().hex, waited_on=waited_on, release_when_done=release_when_done)

    @property
    def in_flight(self) -> Mapping[str, asyncio.Task[None]]:
        """The rows being worked on, and their tasks."""
        return self._in_flight

    def free_slots(self) -> int:
        return self.slots - len(self._in_flight)

    # -- claiming and starting --------------------------------------------------------------------

    async def claim(self, ids: Sequence[str], *where: ColumnElement[bool], now: datetime, token: str) -> list[RowT]:
        """Lease the free rows of `ids` (at most CLAIM_CHUNK) that match `where` under `token`, and load
        them: the rows won."""
        if not ids:
            return []
        async with self._lease_write() as session:
            await session.execute(self.leases.claim(ids, *where, now=now, token=token, until=now + self.lease))
        async with self.db.read() as session:
            model = self.leases.model
            found = await session.execute(select(model).where(model.id.in_(ids), self.leases.held(token)))
            return cast(list[RowT], list(found.scalars()))

    def start(self, row_id: str, work: Work, batch: Batch, *, leased_until: datetime) -> None:
        """Run `work` on a row claimed under `batch` (its lease ending at `leased_until`) in a task of its
        own (named after the row), which outlives whoever started it if it is slow."""

        async def run() -> None:
            changed = False
            try:
                changed = await work()
            except Exception:  # one row's fault must not end the others' work; the row is released as any other
                log.exception(f"{self.name}_row_failed", row_id=row_id)
            finally:
                batch.running.discard(self._in_flight.pop(row_id))
                self._token_of.pop(row_id, None)
                self._leased_until.pop(row_id, None)
                if batch.waited_on:
                    batch.done.append(row_id)
                    if changed:
                        batch.changed_ids.append(row_id)
                elif batch.release_when_done:
                    self._finished_late.setdefault(batch.token, []).append(row_id)
                    if not batch.running:  # the batch's last row: its leases go back now
                        self._release_soon(batch.token)

        task = asyncio.create_task(run(), name=row_id)
        self._in_flight[row_id] = task
        self._token_of[row_id] = batch.token
        self._leased_until[row_id] = leased_until
        batch.running.add(task)
        batch.started_ids.append(row_id)

    async def pump(
        self,
        ids: Sequence[str],
        batch: Batch,
        *,
        now: datetime,
        where: Sequence[ColumnElement[bool]] = (),
        deadline: float | None,
        work_for: Callable[[RowT], Work],
        room: Callable[[], int] | None = None,
        on_claim: Callable[[list[str]], None] | None = None,
    ) -> int:
        """Claim and start `ids` in order as slots free up (`room()` of them, by default `free_slots()`),
        a chunk at a time, each row won running `work_for(row)`. Until `deadline` (monotonic) it waits for
        a slot; after it, or without one, it goes on only while rows finish at once (work that makes no
        call and no write), so a pass over many such rows ends in one go. Rows not reached stay unleased.
        `on_claim(chunk)` hears each chunk about to be claimed (rows already in flight left out). Returns
        how many of `ids` were reached (claimed, or found held elsewhere)."""
        room = room or self.free_slots
        position = 0
        while position < len(ids):
            free = room()
            if free <= 0:
                left = 0.0 if deadline is None else deadline - self.clock.monotonic()
                if left > 0:
                    await asyncio.wait(
                        list(self._in_flight.values()), timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                await asyncio.sleep(0)  # the rows that finish in their first step free their slots
                if room() <= 0:
                    return position
                continue
            step = min(free, CLAIM_CHUNK, len(ids) - position)
            chunk = [i for i in ids[position : position + step] if i not in self._in_flight]
            position += step
            if on_claim is not None:
                on_claim(chunk)
            for row in await self.claim(chunk, *where, now=now, token=batch.token):
                row_id = cast(str, row.id)  # (an instance's attribute: the column's value)
                if row_id not in self._in_flight:  # else started meanwhile under another batch
                    self.start(row_id, work_for(row), batch, leased_until=now + self.lease)
        return position

    # -- keeping and giving back ------------------------------------------------------------------

    async def renew(self, *, ahead: float | None = None) -> None:
        """Extend the leases of the rows in flight by a lease period from now, so no replica takes one over
        while its work is slow: every one of them, or with `ahead` only those whose lease ends within
        `ahead` seconds (no write at all while none does, so a worker may call this at every pass)."""
        now = self.clock.now()
        if ahead is None:
            ids = list(self._in_flight)
        else:
            soon = now + timedelta(seconds=ahead)
            ids = [row_id for row_id, until in self._leased_until.items() if until <= soon]
        if not ids:
            return
        until = now + self.lease
        if self.leases.owner is not None:  # this worker's rows, whatever their batch
            batches: dict[str | None, list[str]] = {None: ids}
        else:
            batches = {}
            for row_id in ids:
                batches.setdefault(self._token_of[row_id], []).append(row_id)
        for token, rows in batches.items():
            for start in range(0, len(rows), CLAIM_CHUNK):
                async with self._lease_write() as session:
                    await session.execute(
                        self.leases.renew(rows[start : start + CLAIM_CHUNK], until=until, token=token)
                    )
        for row_id in ids:
            if row_id in self._leased_until:  # (not finished meanwhile)
                self._leased_until[row_id] = until

    async def settle(self, batch: Batch) -> None:
        """Stop waiting on `batch`: give back the rows done; each still running is given back when done."""
        batch.waited_on = False
        if not batch.release_when_done:
            return
        if batch.running:
            await self.release(batch.token, batch.done)
        elif batch.started:
            await self.release(batch.token)

    async def release(self, token: str, ids: Sequence[str] | None = None) -> None:
        """Give back the rows leased under `token`: every one of them in one statement, or only `ids`."""
        if ids is None:
            async with self.db.write() as session:
                await session.execute(self.leases.release(token))
            return
        for start in range(0, len(ids), CLAIM_CHUNK):
            async with self.db.write() as session:
                await session.execute(self.leases.release(token, ids[start : start + CLAIM_CHUNK]))

    async def release_late(self) -> None:
        """Give back the rows that finished after their batch stopped waiting and are still held (one
        statement per batch)."""
        late, self._finished_late = self._finished_late, {}
        for token, ids in late.items():
            await self.release(token, ids)

    def _release_soon(self, token: str) -> None:
        """Release the rows of `token` that finished late, in a task of its own: leased until the next
        `release_late`, they would be held for a lease period by a replica killed meanwhile."""
        if self._stopping:  # `aclose` gives them back with the rest
            return
        ids = self._finished_late.pop(token, [])
        if not ids:
            return

        async def release() -> None:
            try:
                await self.release(token, ids)
            except Exception:  # the leases lapse by themselves
                log.warning(f"{self.name}_release_failed", exc_info=True)

        task = asyncio.create_task(release())
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    # -- shutdown ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Shutting down: rows that finish from now on keep their lease until `aclose` gives back the lot."""
        self._stopping = True

    async def drain(self, timeout: float) -> None:
        """Let the rows in flight finish, for at most `timeout` seconds."""
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=timeout)

    async def aclose(self) -> None:
        """Cancel the work still in flight and give back every row held, so another replica takes them over
        at once rather than after a lease period."""
        self._stopping = True
        tokens = {*self._token_of.values(), *self._finished_late}
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # best effort: a lease not released lapses by itself
            if self.leases.owner is not None:  # every row this worker holds, in one statement
                async with self.db.write() as session:
                    await session.execute(self.leases.release_mine())
            else:
                for token in tokens:
                    await self.release(token)

    # -- the guarded write ------------------------------------------------------------------------

    def held(self, token: str) -> ColumnElement[bool]:
        """The condition of a write by whoever claimed a row under `token`."""
        return self.leases.held(token)

    async def update_held(
        self, session: AsyncSession, row_id: str, token: str, values: Mapping[str, Any], *where: ColumnElement[bool]
    ) -> bool:
        """Set `values` on the row, in one UPDATE that lands only while the row is still leased under
        `token` (and matches `where`); False when another replica took it (or it no longer matches)."""
        model = self.leases.model
        result = await session.execute(
            update(model)
            .where(model.id == row_id, self.leases.held(token), *where)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1

    def _lease_write(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A write of this runner's own leases (a claim, a renewal): a worker's turn on SQLite only (see the
        module's doc)."""
        return self.db.worker_write() if self.db.is_sqlite and self.lease_writes_take_turns else self.db.write()
