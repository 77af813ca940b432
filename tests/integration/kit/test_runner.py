"""The leased-work runner (kit/runner.py) on a real store, SQLite and PostgreSQL: two runners stand for two
replicas sharing rows. A lease that lapses mid-work goes to the other runner and the first one's write is
refused; a renewal during a slow call keeps the row past its first expiry, and a renewal ahead of expiry
extends only the leases that run low; a runner without a lease owner
renews and releases only what its own tokens hold; slots bound the rows claimed; rows done are given back
(unless their work gives them back itself), and at shutdown every row held is, so the other runner takes
them at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from novita_gpu.kit.clock import ManualClock
from novita_gpu.kit.db import Database
from novita_gpu.kit.leases import LeasedTable
from novita_gpu.kit.runner import LeaseRunner, Work
from novita_gpu.kit.tables import Instance
from tests.harness import store_with_instances

LEASE_SECONDS = 30.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, list[str]]]:
    """A store holding three instance rows, made through the API (the harness), and their ids."""
    async with store_with_instances(request.param, tmp_path, 3) as (db, ids):
        yield db, sorted(ids)


def runner(db: Database, clock: ManualClock, owner: str | None, *, slots: int = 8) -> LeaseRunner[Instance]:
    return LeaseRunner(
        db, clock, LeasedTable(Instance, owner=owner), lease_seconds=LEASE_SECONDS, slots=slots, name=f"test-{owner}"
    )


class SlowWork:
    """Work that waits until let go, then makes a guarded write to its row and records whether it landed."""

    def __init__(self, db: Database, runner: LeaseRunner[Instance], message: str) -> None:
        self.db = db
        self.runner = runner
        self.message = message
        self.go = asyncio.Event()
        self.landed: dict[str, bool] = {}

    def __call__(self, row: Instance) -> Work:
        row_id, token = row.id, row.lease_token
        assert token is not None

        async def work() -> bool:
            await self.go.wait()
            async with self.db.write() as session:
                self.landed[row_id] = await self.runner.update_held(
                    session, row_id, token, {"status_message": self.message}
                )
            return self.landed[row_id]

        return work


async def leases(db: Database) -> dict[str, str | None]:
    async with db.read() as session:
        return dict((await session.execute(select(Instance.id, Instance.lease_token))).tuples().all())


async def lease_ends(db: Database) -> dict[str, datetime | None]:
    async with db.read() as session:
        return dict((await session.execute(select(Instance.id, Instance.lease_expires_at))).tuples().all())


async def message(db: Database, row_id: str) -> str | None:
    async with db.read() as session:
        return await session.scalar(select(Instance.status_message).where(Instance.id == row_id))


async def until(condition: object, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("owner", ["replica-a", None])
async def test_a_lease_that_lapses_mid_work_goes_to_the_other_runner_and_the_late_write_is_refused(
    store: tuple[Database, list[str]], owner: str | None
) -> None:
    db, [row, *_] = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a, b = runner(db, clock, owner), runner(db, clock, "replica-b" if owner else None)
    slow = SlowWork(db, a, "a")
    first = a.batch()
    assert await a.pump([row], first, now=clock.now(), deadline=None, work_for=slow) == 1
    assert set(a.in_flight) == {row}

    clock.advance(LEASE_SECONDS + 1)  # a's call hangs past its lease, and a does not renew it
    second = b.batch()
    assert [r.id for r in await b.claim([row], now=clock.now(), token=second.token)] == [row]
    slow.go.set()
    await asyncio.wait(first.running)
    assert slow.landed == {row: False}  # a's write is refused: b took the row

    async with db.write() as session:
        assert await b.update_held(session, row, second.token, {"status_message": "b"})
    assert await message(db, row) == "b"


async def test_a_renewal_during_a_slow_call_keeps_the_row_past_its_first_expiry(
    store: tuple[Database, list[str]],
) -> None:
    db, [row, *_] = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a, b = runner(db, clock, "replica-a"), runner(db, clock, "replica-b")
    slow = SlowWork(db, a, "a")
    batch = a.batch()
    await a.pump([row], batch, now=clock.now(), deadline=None, work_for=slow)

    clock.advance(LEASE_SECONDS - 10)
    await a.renew()  # the call is still in flight: its lease runs a full period from now
    clock.advance(15)  # past the lease as first claimed
    assert await b.claim([row], now=clock.now(), token=b.batch().token) == []
    slow.go.set()
    await asyncio.wait(batch.running)
    assert slow.landed == {row: True}
    assert await message(db, row) == "a"


@pytest.mark.parametrize("owner", ["replica-a", None])
async def test_renewing_ahead_extends_only_the_leases_that_run_low(
    store: tuple[Database, list[str]], owner: str | None
) -> None:
    """A worker that renews at every pass (`ahead`) writes only for the rows whose lease ends within
    `ahead` seconds; those it renews are kept past their first expiry."""
    db, [early, late, _] = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a, b = runner(db, clock, owner), runner(db, clock, "replica-b" if owner else None)
    slow = SlowWork(db, a, "a")
    start = clock.now()
    await a.pump([early], a.batch(), now=clock.now(), deadline=None, work_for=slow)
    clock.advance(15)
    await a.pump([late], a.batch(), now=clock.now(), deadline=None, work_for=slow)
    claimed = await lease_ends(db)
    assert (claimed[early], claimed[late]) == (start + timedelta(seconds=30), start + timedelta(seconds=45))

    clock.advance(4)  # `early`'s lease ends in 11 s, `late`'s in 26 s
    await a.renew(ahead=10)
    assert await lease_ends(db) == claimed  # none runs low: nothing written
    clock.advance(1)
    await a.renew(ahead=10)  # `early`'s ends in 10 s: renewed, `late`'s left as it was
    renewed = await lease_ends(db)
    assert (renewed[early], renewed[late]) == (clock.now() + timedelta(seconds=LEASE_SECONDS), claimed[late])
    await a.renew(ahead=10)  # each lease now ends over 10 s from now
    assert await lease_ends(db) == renewed

    clock.advance(LEASE_SECONDS - 20 + 1)  # past `early`'s lease as first claimed
    assert await b.claim([early], now=clock.now(), token=b.batch().token) == []
    slow.go.set()
    await a.drain(5)
    assert slow.landed == {early: True, late: True}


async def test_a_runner_without_an_owner_renews_and_releases_only_under_its_own_tokens(
    store: tuple[Database, list[str]],
) -> None:
    """Without a lease owner only a row's token says whose it is: a runner whose row another took keeps its
    hands off it."""
    db, [row, *_] = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a, b, c = runner(db, clock, None), runner(db, clock, None), runner(db, clock, None)
    await a.pump([row], a.batch(), now=clock.now(), deadline=None, work_for=SlowWork(db, a, "a"))
    clock.advance(LEASE_SECONDS + 1)
    taken = b.batch()
    assert [r.id for r in await b.claim([row], now=clock.now(), token=taken.token)] == [row]

    clock.advance(10)
    await a.renew()  # a's call is still in flight, but the row is b's: its lease is not extended
    await a.aclose()  # nor given back
    assert (await leases(db))[row] == taken.token
    clock.advance(LEASE_SECONDS - 10 + 1)  # b's lease, as b took it, has lapsed
    assert [r.id for r in await c.claim([row], now=clock.now(), token=c.batch().token)] == [row]


async def test_slots_bound_the_rows_claimed_and_rows_done_are_given_back(store: tuple[Database, list[str]]) -> None:
    db, ids = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a = runner(db, clock, "replica-a", slots=2)
    slow = SlowWork(db, a, "a")
    batch = a.batch()
    assert await a.pump(ids, batch, now=clock.now(), deadline=None, work_for=slow) == 2
    held = await leases(db)
    assert [held[i] is not None for i in ids] == [True, True, False]  # the third waits unleased
    assert a.free_slots() == 0

    slow.go.set()
    await asyncio.wait(batch.running)
    assert (batch.started, batch.changed, sorted(batch.done)) == (2, 2, ids[:2])
    await a.settle(batch)
    assert set((await leases(db)).values()) == {None}


async def test_rows_done_after_nobody_waits_are_given_back_by_the_runner(store: tuple[Database, list[str]]) -> None:
    db, ids = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a = runner(db, clock, "replica-a")
    slow = SlowWork(db, a, "a")
    batch = a.batch(waited_on=False)
    await a.pump(ids, batch, now=clock.now(), deadline=None, work_for=slow)
    slow.go.set()

    async def released() -> bool:
        return set((await leases(db)).values()) == {None}

    await until(released)
    assert slow.landed == dict.fromkeys(ids, True)


async def test_rows_of_a_batch_whose_work_gives_them_back_itself_are_left_to_it(
    store: tuple[Database, list[str]],
) -> None:
    """An outbox row's outcome clears its lease in the same UPDATE: the runner spends no write on it. (This
    work keeps the lease, to show that the runner leaves it alone.)"""
    db, ids = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a = runner(db, clock, None)
    slow = SlowWork(db, a, "delivered")
    batch = a.batch(waited_on=False, release_when_done=False)
    await a.pump(ids, batch, now=clock.now(), deadline=None, work_for=slow)
    slow.go.set()
    await asyncio.wait(batch.running)
    await asyncio.sleep(0.05)  # time enough for a release the runner would make in the background
    await a.release_late()
    assert slow.landed == dict.fromkeys(ids, True)
    assert set((await leases(db)).values()) == {batch.token}


@pytest.mark.parametrize("owner", ["replica-a", None])
async def test_shutdown_gives_back_every_row_held_and_the_other_runner_takes_them_at_once(
    store: tuple[Database, list[str]], owner: str | None
) -> None:
    db, ids = store
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    a, b = runner(db, clock, owner), runner(db, clock, "replica-b" if owner else None)
    slow = SlowWork(db, a, "a")  # never let go: its calls are still in flight at shutdown
    batch = a.batch()
    await a.pump(ids, batch, now=clock.now(), deadline=None, work_for=slow)

    a.stop()
    await a.drain(0.05)
    await a.aclose()
    assert a.in_flight == {} and slow.landed == {}
    clock.advance(1)  # well within the leases a took
    won = await b.claim(ids, now=clock.now(), token=b.batch().token)
    assert sorted(r.id for r in won) == ids
