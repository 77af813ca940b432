"""Replicas share one listing of Novita through the store (PostgreSQL): whoever needs a newer one lists while
the others use what is stored; while one lists, the others go on with the latest; a failed listing gives
the right to list back at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from novita_gpu.instances.listing import Listing, SharedListing
from novita_gpu.kit.clock import ManualClock
from novita_gpu.kit.db import Database
from novita_gpu.novita import Listed
from tests.fixtures.databases import fresh_database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database("postgres", tmp_path) as url:
        database = Database(url)
        await database.migrate()
        yield database
        await database.dispose()


class Novita:
    """Counts the listings made, each showing `status` for two instances."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls = 0
        self.status = "running"
        self.hold: asyncio.Event | None = None
        self.listing = asyncio.Event()  # set while a listing waits on `hold`

    async def __call__(self) -> Listing:
        self.calls += 1
        listing = Listing(taken_at=self.clock.now())
        if self.hold is not None:
            self.listing.set()
            await self.hold.wait()
        for n in (1, 2):
            listing.add(Listed(f"n-{n}", f"rec-{n}-0000000{n}", self.status, "disk full" if n == 2 else "", n == 1))
        return listing


def replica(db: Database, clock: ManualClock, name: str) -> SharedListing:
    return SharedListing(db, clock, name, lease_seconds=30, gap_seconds=0.25)


async def test_one_replica_lists_and_the_others_read_what_it_stored(db: Database) -> None:
    clock = ManualClock()
    novita = Novita(clock)
    a, b, c = (replica(db, clock, f"reconciler-{n}") for n in (1, 2, 3))
    before = clock.now() - timedelta(seconds=1)

    listed, here = await a.get(before, novita)
    assert here and novita.calls == 1
    for other in (b, c):
        shared, here = await other.get(before, novita)
        assert not here and novita.calls == 1  # newer than their previous tick: nobody lists again
        assert shared.taken_at == listed.taken_at and shared.by_id == listed.by_id
        assert shared.by_id["n-2"] == Listed("n-2", "rec-2-00000002", "running", "disk full", False)
        assert shared.by_name["rec-1-00000001"].spot_reclaimed

    clock.advance(0.1)  # a tick later, but within the gap one process keeps between two listings
    _, here = await b.get(clock.now() - timedelta(seconds=0.05), novita)
    assert not here and novita.calls == 1
    clock.advance(0.5)
    novita.status = "exited"
    fresh, here = await b.get(clock.now() - timedelta(seconds=0.05), novita)
    assert here and novita.calls == 2 and fresh.by_id["n-1"].status == "exited"
    assert (await a.get(clock.now() - timedelta(seconds=0.05), novita))[0].by_id["n-1"].status == "exited"


async def test_while_one_replica_lists_the_others_go_on_with_the_latest(db: Database) -> None:
    clock = ManualClock()
    novita = Novita(clock)
    a, b = replica(db, clock, "reconciler-a"), replica(db, clock, "reconciler-b")
    first, _ = await a.get(clock.now() - timedelta(seconds=1), novita)
    clock.advance(1)
    novita.hold = asyncio.Event()
    slow = asyncio.create_task(a.get(clock.now() - timedelta(seconds=0.5), novita))
    await asyncio.wait_for(novita.listing.wait(), 10)  # a holds the right to list and waits on Novita
    latest, here = await b.get(clock.now() - timedelta(seconds=0.5), novita)
    assert not here and latest.taken_at == first.taken_at and novita.calls == 2
    novita.hold.set()
    assert (await slow)[1]


async def test_a_failed_listing_gives_the_right_to_list_back_at_once(db: Database) -> None:
    clock = ManualClock()
    a, b = replica(db, clock, "reconciler-a"), replica(db, clock, "reconciler-b")

    async def fails() -> Listing:
        raise RuntimeError("Novita is down")

    with pytest.raises(RuntimeError):
        await a.get(clock.now(), fails)
    novita = Novita(clock)
    listing, here = await b.get(clock.now() - timedelta(seconds=1), novita)
    assert here and novita.calls == 1 and set(listing.by_id) == {"n-1", "n-2"}


async def test_before_any_listing_is_stored_a_replica_judges_no_row(db: Database) -> None:
    clock = ManualClock()
    a, b = replica(db, clock, "reconciler-a"), replica(db, clock, "reconciler-b")
    novita = Novita(clock)
    novita.hold = asyncio.Event()
    slow = asyncio.create_task(a.get(clock.now(), novita))
    await asyncio.wait_for(novita.listing.wait(), 10)  # a holds the right to list
    nothing, here = await b.get(clock.now(), novita)
    assert not here and not nothing.by_id and not nothing.knows(clock.now() - timedelta(days=365))
    novita.hold.set()
    await slow
