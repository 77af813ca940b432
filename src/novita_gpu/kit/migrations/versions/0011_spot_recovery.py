"""instances: spot recovery (recovery_policy, recovery, upstream_generation)

recovery_policy: what a reclaim of a spot instance leads to ({onReclaim, maxRecoveries, fallbackToOnDemand,
keepReclaimed}); null on rows written before, which follow the server's SPOT_* defaults. recovery: the
recovery under way and those before it (instances/recovery.py). upstream_generation: which of the
record's upstream names the next create goes out under (0: `upstream_name` itself, n: `-r<n>` after it),
so a recreate never shares a name with the instance it replaces.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    # Plain ADD COLUMNs, never a batch copy: re-creating instances on SQLite would cascade-delete its events.
    op.add_column("instances", sa.Column("recovery_policy", sa.JSON(), nullable=True))
    op.add_column("instances", sa.Column("recovery", sa.JSON(), nullable=True))
    op.add_column(
        "instances", sa.Column("upstream_generation", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )


def downgrade() -> None:
    op.drop_column("instances", "upstream_generation")
    op.drop_column("instances", "recovery")
    op.drop_column("instances", "recovery_policy")
