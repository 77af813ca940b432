"""Start-up migrations: replicas migrating one fresh store together, and a store newer than this code."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from sqlalchemy import text

from novita_gpu.kit.db import Database
from novita_gpu.kit.migrations import StoreTooNew
from novita_gpu.kit.serving import free_port
from tests.e2e.processes import NOVITA_GPU, clean_environment
from tests.fixtures.databases import fresh_database, set_revision
from tests.unit.test_docs_revisions import head

REPLICAS = 4
MIGRATE_TIMEOUT = 60.0
FUTURE = "9999_from_a_newer_version"
HEAD = head()


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
        assert await _revisions(url) == [HEAD]


async def test_migrations_started_together_in_one_process_all_succeed(tmp_path: Path) -> None:
    """The same race between engines of one process (Alembic's context is process-global: the lock
    must also keep two upgrades from interleaving there)."""
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.wait_for(asyncio.gather(*(_migrate(url) for _ in range(REPLICAS))), MIGRATE_TIMEOUT)
        assert await _revisions(url) == [HEAD]


async def _migrated_by_a_newer_version(url: str) -> None:
    """A store at head, then moved to a revision no script of ours has (as a newer release would)."""
    await _migrate(url)
    await set_revision(url, FUTURE)


async def test_a_store_migrated_by_a_newer_version_is_refused_and_left_alone(store_url: str) -> None:
    await _migrated_by_a_newer_version(store_url)
    db = Database(store_url)
    try:
        with pytest.raises(StoreTooNew) as refused:
            await db.migrate()
    finally:
        await db.dispose()
    assert refused.value.revisions == (FUTURE,)
    assert str(refused.value) == (
        f"the store at {store_url} was migrated by a newer novita-gpu (revision {FUTURE}); upgrade this one"
    )
    assert await _revisions(store_url) == [FUTURE]


async def _serve(database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`novita-gpu serve` on a free port against `database_url`, until it exits (here: refusing to start)."""
    return await asyncio.to_thread(
        subprocess.run,
        [str(NOVITA_GPU), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env={**clean_environment(), "DATABASE_URL": database_url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT,
        cwd=cwd,
    )


async def test_serve_refuses_a_newer_store_with_one_line_and_a_non_zero_exit(store_url: str, tmp_path: Path) -> None:
    """The operator's view: one line on stderr saying what to do, no traceback, exit code 2."""
    await _migrated_by_a_newer_version(store_url)
    result = await _serve(store_url, tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [
        f"error: the store at {store_url} was migrated by a newer novita-gpu (revision {FUTURE}); upgrade this one"
    ]
    assert "Traceback" not in result.stdout


async def test_serve_that_cannot_reach_its_store_says_so_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://novita:secret@127.0.0.1:{free_port()}/nothing"
    result = await _serve(url, tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot use the store at postgresql+asyncpg://novita:***@127.0.0.1:"), line
    assert "secret" not in result.stderr + result.stdout
