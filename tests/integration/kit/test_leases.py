"""Row leases on a real store (SQLite and PostgreSQL): a claim, a renewal, a lease that lapses mid-work
and a write refused because another replica took the row meanwhile, a release that hands over at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from novita_gpu.kit.db import Database
from novita_gpu.kit.leases import LeasedTable
from novita_gpu.kit.tables import Instance
from tests.harness import store_with_instances

LEASE = timedelta(seconds=30)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def rows(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, str]]:
    """A store holding one instance row, made through the API (the harness), and its id."""
    async with store_with_instances(request.param, tmp_path, 1) as (db, [instance_id]):
        yield db, instance_id


async def claim(db: Database, leases: LeasedTable, row: str, token: str, now: datetime) -> bool:
    async with db.write() as session:
        await session.execute(leases.claim([row], now=now, token=token, until=now + LEASE))
    async with db.read() as session:
        return await session.scalar(select(func.count()).where(Instance.id == row, leases.held(token))) == 1


async def guarded_write(db: Database, leases: LeasedTable, row: str, token: str) -> bool:
    """A worker's write: it lands only while the worker's lease holds."""
    async with db.write() as session:
        result = await session.execute(
            update(Instance).where(Instance.id == row, leases.held(token)).values(status_message="worked on")
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def test_one_claim_wins_and_a_lapsed_lease_goes_to_the_other_replica(rows: tuple[Database, str]) -> None:
    db, row = rows
    a, b = LeasedTable(Instance, owner="replica-a"), LeasedTable(Instance, owner="replica-b")
    assert await claim(db, a, row, "a1", NOW)
    assert not await claim(db, b, row, "b1", NOW + timedelta(seconds=29))  # still a's
    assert await guarded_write(db, a, row, "a1")

    assert await claim(db, b, row, "b2", NOW + LEASE + timedelta(seconds=1))  # a's lease lapsed mid-work
    assert not await guarded_write(db, a, row, "a1")  # a's late write is refused
    assert await guarded_write(db, b, row, "b2")


async def test_a_renewed_lease_keeps_the_row(rows: tuple[Database, str]) -> None:
    db, row = rows
    a, b = LeasedTable(Instance, owner="replica-a"), LeasedTable(Instance, owner="replica-b")
    assert await claim(db, a, row, "a1", NOW)
    async with db.write() as session:
        await session.execute(a.renew([row], until=NOW + timedelta(seconds=20) + LEASE))
    assert not await claim(db, b, row, "b1", NOW + LEASE + timedelta(seconds=1))
    assert await guarded_write(db, a, row, "a1")


async def test_a_worker_takes_back_its_own_rows_and_a_release_hands_over_at_once(rows: tuple[Database, str]) -> None:
    db, row = rows
    a, b = LeasedTable(Instance, owner="replica-a"), LeasedTable(Instance, owner="replica-b")
    assert await claim(db, a, row, "a1", NOW)
    assert await claim(db, a, row, "a2", NOW + timedelta(seconds=1))  # its own: the next tick re-claims
    async with db.write() as session:
        await session.execute(a.release_mine())
    assert await claim(db, b, row, "b1", NOW + timedelta(seconds=2))
