"""instance_events.payload: the webhook body of each status change, as it was when it happened

The event stream (GET /api/events/stream) sends the same body as the webhook, and a client that resumes
an hour later must get the body of that moment, not the instance as it is now. Events written before
this column existed have none; the stream builds theirs from the event and the instance row.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    # A plain ADD COLUMN, never a batch copy: re-creating instance_events on SQLite would cascade-delete
    # the webhook deliveries that reference it.
    op.add_column("instance_events", sa.Column("payload", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("instance_events", "payload")
