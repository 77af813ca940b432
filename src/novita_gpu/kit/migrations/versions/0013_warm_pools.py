"""pools, pool_claims; instances.pool_id/pool_name/pool_state/disk_price_per_hour/disk_since; billing_periods.pool/kind

A warm pool keeps idle members (ordinary instance rows with `pool_id` and `pool_state`) ready or stopped,
and hands them out on claim (pools/, docs/pools.md). A stopped idle member's kept disk is billed to the
pool (`disk_since`, ledger rows of kind `disk`); each ledger row of an idle member names its `pool`.
"""

import sqlalchemy as sa
from alembic import op

import novita_gpu.kit.db

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    when = novita_gpu.kit.db.UTCDateTime
    op.create_table(
        "pools",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("min_ready", sa.Integer(), nullable=False),
        sa.Column("min_stopped", sa.Integer(), nullable=False),
        sa.Column("max_members", sa.Integer(), nullable=False),
        sa.Column("idle_minutes", sa.Integer(), nullable=False),
        sa.Column("return_on_auto_stop", sa.Boolean(), nullable=False),
        sa.Column("prewarm", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("refill_blocked", sa.JSON(), nullable=True),
        sa.Column("last_claim_at", when(), nullable=True),
        sa.Column("created_at", when(), nullable=False),
        sa.Column("updated_at", when(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_pools_owner_active_name",
        "pools",
        ["owner", "name"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "pool_claims",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.String(40), nullable=False),
        sa.Column("instance_id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("at", when(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pool_claims_pool_at", "pool_claims", ["pool_id", "at"])
    # Plain ADD COLUMNs, never a batch copy: re-creating instances on SQLite would cascade-delete its events.
    op.add_column("instances", sa.Column("pool_id", sa.String(40), nullable=True))
    op.add_column("instances", sa.Column("pool_name", sa.String(40), nullable=True))
    op.add_column("instances", sa.Column("pool_state", sa.String(16), nullable=True))
    op.add_column("instances", sa.Column("disk_price_per_hour", sa.Float(), nullable=True))
    op.add_column("instances", sa.Column("disk_since", when(), nullable=True))
    op.create_index("ix_instances_pool_id", "instances", ["pool_id"])
    op.add_column("billing_periods", sa.Column("pool", sa.String(40), nullable=True))
    op.add_column("billing_periods", sa.Column("kind", sa.String(8), nullable=False, server_default="gpu"))


def downgrade() -> None:
    op.drop_column("billing_periods", "kind")
    op.drop_column("billing_periods", "pool")
    op.drop_index("ix_instances_pool_id", "instances")
    for column in ("disk_since", "disk_price_per_hour", "pool_state", "pool_name", "pool_id"):
        op.drop_column("instances", column)
    op.drop_index("ix_pool_claims_pool_at", "pool_claims")
    op.drop_table("pool_claims")
    op.drop_index("uq_pools_owner_active_name", "pools")
    op.drop_table("pools")
