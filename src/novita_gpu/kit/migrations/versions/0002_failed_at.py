"""instances.failed_at: when an instance last failed (its idle clock while Novita still runs it)"""

import sqlalchemy as sa
from alembic import op

import novita_gpu.kit.db

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_at", novita_gpu.kit.db.UTCDateTime(), nullable=True))
    # Instances that failed before this column existed: their last update is when they failed or later,
    # so their idle clock never starts earlier than it should.
    op.execute("UPDATE instances SET failed_at = updated_at WHERE status = 'failed'")


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("failed_at")
