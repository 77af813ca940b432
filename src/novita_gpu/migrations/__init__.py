"""Alembic migrations, applied at start-up (`Database.migrate`) and by `alembic` for developers.

Replicas may start together on one new PostgreSQL database: each upgrade holds a transaction-level
advisory lock from before it reads `alembic_version` until it commits, so one replica migrates and the
others wait, then find the schema at head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

HERE = Path(__file__).parent

# The key of the PostgreSQL advisory lock held while migrating: b"novitagp" as a (positive) bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"novitagp", "big")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def lock_for_migration(connection: Connection) -> None:
    """On PostgreSQL, wait for any other replica's migration and keep others out until this transaction
    ends (commit or rollback release it: nothing to unlock, even if this process dies mid-way)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade inside the caller's transaction, under the migration lock."""
    lock_for_migration(connection)
    command.upgrade(alembic_config(connection), "head")
