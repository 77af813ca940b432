"""Start-up migrations: replicas migrating one fresh store together, and a store newer than this code."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from sqlalchemy import text

from novita_gpu.db import Database
from tests.fixtures.databases import fresh_database

REPLICAS = 4
MIGRATE_TIMEOUT = 60.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


async def _revisions(url: str) -> list[str]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    finally:
        await db.dispose()


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.dispose()


def _replica(url: str, barrier: Barrier) -> None:
    """One replica's start-up migration, released together with the others."""
    barrier.wait(timeout=MIGRATE_TIMEOUT)
    asyncio.run(_migrate(url))


async def test_replica_processes_migrating_a_fresh_postgres_store_together_all_succeed(tmp_path: Path) -> None:
    """Issue 17 #5: without a lock every replica saw no alembic_version and created it; all but one
    failed with a UniqueViolation and exited."""
    async with fresh_database("postgres", tmp_path) as url:
        spawn = multiprocessing.get_context("spawn")
        barrier = spawn.Barrier(REPLICAS)
        replicas = [spawn.Process(target=_replica, args=(url, barrier)) for _ in range(REPLICAS)]
        for replica in replicas:
            replica.start()
        deadline = asyncio.get_running_loop().time() + MIGRATE_TIMEOUT
        for replica in replicas:
            await asyncio.to_thread(replica.join, max(0.0, deadline - asyncio.get_running_loop().time()))
        try:
            assert [r.exitcode for r in replicas] == [0] * REPLICAS
        finally:
            for replica in replicas:
                if replica.is_alive():
                    replica.kill()
                    replica.join()
        assert await _revisions(url) == ["0003"]


async def test_migrations_started_together_in_one_process_all_succeed(tmp_path: Path) -> None:
    """The same race between engines of one process (Alembic's context is process-global: the lock
    must also keep two upgrades from interleaving there)."""
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.wait_for(asyncio.gather(*(_migrate(url) for _ in range(REPLICAS))), MIGRATE_TIMEOUT)
        assert await _revisions(url) == ["0003"]
