"""Alembic environment: runs on the connection handed over by `upgrade_to_head` (online only)."""

from __future__ import annotations

from alembic import context

import novita_gpu.kit.tables  # noqa: F401  (every table on Base.metadata)
from novita_gpu.kit.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
