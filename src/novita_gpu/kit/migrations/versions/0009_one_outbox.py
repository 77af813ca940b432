"""One outbox: the deliveries of account events (budget.exceeded) move into webhook_deliveries

webhook_deliveries gains account_event_id, a link to account_events; instance_id and event_id become
nullable, and a check holds that a delivery is of exactly one event: an instance's or an API key's. Every
row of account_webhooks is copied over with its id (the webhook-id receivers de-duplicate on), its progress
and its lease: pending ones are delivered by the dispatcher after the upgrade, finished ones stay the
history that GET /api/budget/events shows. Then account_webhooks is dropped.

On SQLite the column changes rebuild webhook_deliveries (copy, DROP TABLE, rename). With foreign keys
enforced, as the service's connections do (and PRAGMA foreign_keys cannot change inside the migration's
transaction), that DROP deletes every row first and the delete cascades into webhook_attempts: the attempts
are set aside and put back. A later migration that rebuilds webhook_deliveries on SQLite must do the same.

Downgrading moves the account deliveries back into account_webhooks (their attempts go: 0008 kept none).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import novita_gpu.kit.db

revision = "0009"
down_revision = "0008"

# As kit/tables.py has it (ONE_EVENT), written out: a migration keeps the schema of its revision.
ONE_EVENT = (
    "(instance_id IS NOT NULL AND event_id IS NOT NULL AND account_event_id IS NULL)"
    " OR (instance_id IS NULL AND event_id IS NULL AND account_event_id IS NOT NULL)"
)
CHECK = "ck_webhook_deliveries_one_event"
FOREIGN_KEY = "fk_webhook_deliveries_account_event_id"
INDEX = "ix_webhook_deliveries_account_event"
# The outbox columns both tables have, and the tables as this revision moves rows between them.
OUTBOX = (
    "id",
    "url",
    "event",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "created_at",
    "delivered_at",
    "lease_token",
    "lease_expires_at",
)
deliveries = sa.table("webhook_deliveries", *(sa.column(name) for name in (*OUTBOX, "account_event_id")))
account_webhooks = sa.table("account_webhooks", *(sa.column(name) for name in (*OUTBOX, "event_id", "owner")))
account_events = sa.table("account_events", sa.column("id"), sa.column("owner"))


@contextmanager
def attempts_kept() -> Iterator[None]:
    """Around a rebuild of webhook_deliveries on SQLite: the attempts its DROP cascades away come back."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMP TABLE webhook_attempts_0009 AS SELECT * FROM webhook_attempts")
    yield
    op.execute(
        "INSERT INTO webhook_attempts (id, delivery_id, attempted_at, status_code, error, duration_ms) "
        "SELECT id, delivery_id, attempted_at, status_code, error, duration_ms FROM webhook_attempts_0009 AS kept "
        "WHERE kept.delivery_id IN (SELECT id FROM webhook_deliveries) "
        "AND NOT EXISTS (SELECT 1 FROM webhook_attempts WHERE webhook_attempts.id = kept.id)"
    )
    op.execute("DROP TABLE webhook_attempts_0009")


def upgrade() -> None:
    with attempts_kept(), op.batch_alter_table("webhook_deliveries") as batch:
        batch.alter_column("instance_id", existing_type=sa.String(40), nullable=True)
        batch.alter_column("event_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("account_event_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(FOREIGN_KEY, "account_events", ["account_event_id"], ["id"], ondelete="CASCADE")
        batch.create_check_constraint(CHECK, ONE_EVENT)
        batch.create_index(INDEX, ["account_event_id"])
    moved = sa.select(account_webhooks.c.event_id, *(account_webhooks.c[name] for name in OUTBOX))
    op.execute(deliveries.insert().from_select(["account_event_id", *OUTBOX], moved))
    op.drop_table("account_webhooks")


def downgrade() -> None:
    op.create_table(
        "account_webhooks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", novita_gpu.kit.db.UTCDateTime(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", novita_gpu.kit.db.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_expires_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["account_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_account_webhooks_pending", "account_webhooks", ["status", "next_attempt_at"])
    op.create_index("ix_account_webhooks_event", "account_webhooks", ["event_id"])
    back = sa.select(
        deliveries.c.account_event_id, account_events.c.owner, *(deliveries.c[name] for name in OUTBOX)
    ).join(account_events, account_events.c.id == deliveries.c.account_event_id)
    op.execute(account_webhooks.insert().from_select(["event_id", "owner", *OUTBOX], back))
    op.execute("DELETE FROM webhook_deliveries WHERE account_event_id IS NOT NULL")
    with attempts_kept(), op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_index(INDEX)
        batch.drop_constraint(CHECK, type_="check")
        batch.drop_constraint(FOREIGN_KEY, type_="foreignkey")
        batch.drop_column("account_event_id")
        batch.alter_column("instance_id", existing_type=sa.String(40), nullable=False)
        batch.alter_column("event_id", existing_type=sa.Integer(), nullable=False)
