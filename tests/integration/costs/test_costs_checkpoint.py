"""The minute checkpoint of accrued cost at scale: batched, each batch a worker's turn, and a row moved on
meanwhile is neither overwritten nor reported (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from novita_gpu.costs import meter
from novita_gpu.instances.rendering import iso
from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import Instance
from tests.fixtures.databases import fresh_database

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=10)


def _billing(n: int) -> Instance:
    """A running instance billing since SINCE; odd ones checkpointed five minutes later."""
    checked = SINCE + timedelta(minutes=5) if n % 2 else None
    return Instance(
        id=f"inst_{n:020d}",
        owner="default",
        name=f"billing-{n}",
        upstream_name=f"billing-{n}-{n:08d}",
        status="ready",
        product_name="RTX 4090 24GB",
        template_id="101",
        image_url="pytorch/pytorch:latest",
        ports=[],
        envs=[],
        gpu_num=1,
        rootfs_size=60,
        regions=[],
        billing_mode="onDemand",
        auto_stop_minutes=60,
        labels={},
        desired_state="running",
        created_at=SINCE,
        updated_at=SINCE,
        version=1,
        upstream_status="running",
        price_per_hour=0.36,
        billing_since=SINCE,
        accrued_at=checked,
        billed_seconds=300.0 if checked else 0.0,
        accrued_cost_usd=0.03 if checked else 0.0,
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(request.param, tmp_path) as url:
        database = Database(url)
        await database.migrate()
        async with database.write() as session:
            session.add_all([_billing(n) for n in range(5)])
        yield database
        await database.dispose()


async def test_checkpoint_writes_every_billing_row_in_batches_and_skips_one_moved_on(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(meter, "CHECKPOINT_BATCH", 2)
    rows = await db.fetch(meter._BILLING_ROWS)
    moved_on = rows[0].id

    real = meter._write_checkpoint

    async def meanwhile(database: Database, batch: list[dict[str, object]]) -> list[str]:
        if any(params["row_id"] == moved_on for params in batch):
            async with database.write() as session:  # another replica's checkpoint lands first
                await session.execute(
                    update(Instance).where(Instance.id == moved_on).values(accrued_at=NOW - timedelta(seconds=1))
                )
        return await real(database, batch)

    monkeypatch.setattr(meter, "_write_checkpoint", meanwhile)
    written = await meter.checkpoint(db, NOW)

    assert sorted(written) == sorted(r.id for r in rows if r.id != moved_on)
    figures = {
        r[0]: (r[1], round(r[2], 6))
        for r in await db.fetch(text("SELECT id, billed_seconds, accrued_cost_usd FROM instances"))
    }
    for row in rows:
        if row.id != moved_on:
            assert figures[row.id] == (600.0, round(600 / 3600 * 0.36, 6))  # the whole ten minutes, counted once
            # Each row written comes back with its new `cost` object, for the cached views.
            assert written[row.id] == {
                "accruedUsd": round(600 / 3600 * 0.36, 6),
                "billedSeconds": 600.0,
                "accruedAt": iso(NOW),
                "billingSince": iso(SINCE),
            }
    assert figures[moved_on][0] in (0.0, 300.0)  # left as the other writer made it
