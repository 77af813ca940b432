"""The tables the code declares (tables.py) are the tables the migrations build: a column, index or
foreign key added to one and not the other is caught here, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from novita_gpu.kit.db import Base, Database
from tests.fixtures.databases import fresh_database


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_migrated_store_has_exactly_the_declared_tables(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            await db.migrate()
            async with db.engine.connect() as conn:
                differences = await conn.run_sync(_differences)
        finally:
            await db.dispose()
    assert differences == []
