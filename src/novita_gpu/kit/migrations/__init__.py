"""Alembic migrations, applied at start-up (`Database.migrate`) and by `alembic` for developers.

Replicas may start together on one new PostgreSQL database: each upgrade holds a transaction-level
advisory lock from before it reads `alembic_version` until it commits, so one replica migrates and the
others wait, then find the schema at head. A store at a revision this code does not know was migrated
by a newer version: it is refused (`StoreTooNew`) rather than run against a schema we cannot read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

HERE = Path(__file__).parent

# The key of the PostgreSQL advisory lock held while migrating: b"novitagp" as a (positive) bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"novitagp", "big")


class StoreTooNew(Exception):
    """The store's schema is at a revision this code does not know: a newer novita-gpu migrated it."""

    def __init__(self, revisions: Sequence[str], store: str = "the store") -> None:
        self.revisions = tuple(revisions)
        self.store = store
        super().__init__(
            f"{store} was migrated by a newer novita-gpu (revision {', '.join(self.revisions)}); upgrade this one"
        )


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


def unknown_revisions(connection: Connection, config: Config) -> list[str]:
    """The store's current revisions that none of our migration scripts has."""
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    current = MigrationContext.configure(connection).get_current_heads()
    return [revision for revision in current if revision not in known]


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade inside the caller's transaction, under the migration lock, refusing a newer store."""
    lock_for_migration(connection)
    config = alembic_config(connection)
    if unknown := unknown_revisions(connection, config):
        raise StoreTooNew(unknown)
    command.upgrade(config, "head")
