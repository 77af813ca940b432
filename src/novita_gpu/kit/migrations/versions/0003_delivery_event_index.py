"""webhook_deliveries.event_id indexed: deleting an event (retention) finds its deliveries by index

Without it every deleted event scans the whole deliveries table to cascade (SQLite and PostgreSQL
both need an index on the child key).
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_event", table_name="webhook_deliveries")
