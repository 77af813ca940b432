"""instances.network_storages: the Novita network storages an instance mounts ([{id, mountPoint}])

Sent to Novita at create, as `imageAuthId` already is. Rows written before this column existed mount
none.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # A plain ADD COLUMN, never a batch copy: re-creating instances on SQLite would cascade-delete its events.
    op.add_column("instances", sa.Column("network_storages", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    op.drop_column("instances", "network_storages")
