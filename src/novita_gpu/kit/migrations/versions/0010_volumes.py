"""volumes: network storages at Novita as first-class volumes, the volumes each instance mounts, and
their billing ledger

volumes: one row per volume (goal and progress like an instance's, leased by the volume worker), names
unique among an owner's live volumes. instance_volumes: (instance, volume, mount point), written with the
instance, so a volume in use is one indexed query. volume_billing_periods: closed stretches of a volume's
billing at the size and price it had, kept after the volume is deleted.
"""

import sqlalchemy as sa
from alembic import op

import novita_gpu.kit.db

revision = "0010"
down_revision = "0009"

_LIVE = "status NOT IN ('deleted', 'failed')"


def upgrade() -> None:
    when = novita_gpu.kit.db.UTCDateTime
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("upstream_name", sa.String(120), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("storage_id", sa.String(64), nullable=True),
        sa.Column("cluster_id", sa.String(64), nullable=False),
        sa.Column("region", sa.String(120), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("price_per_hour", sa.Float(), nullable=True),
        sa.Column("adopted", sa.Boolean(), nullable=False),
        sa.Column("create_attempted_at", when(), nullable=True),
        sa.Column("next_action_at", when(), nullable=True),
        sa.Column("action_attempts", sa.Integer(), nullable=False),
        sa.Column("billing_since", when(), nullable=True),
        sa.Column("created_at", when(), nullable=False),
        sa.Column("updated_at", when(), nullable=False),
        sa.Column("available_at", when(), nullable=True),
        sa.Column("deleted_at", when(), nullable=True),
        sa.Column("failed_at", when(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_expires_at", when(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_volumes_status", "volumes", ["status"])
    op.create_index("ix_volumes_upstream_name", "volumes", ["upstream_name"])
    op.create_index("ix_volumes_storage_id", "volumes", ["storage_id"])
    op.create_index("ix_volumes_owner_created", "volumes", ["owner", "created_at", "id"])
    op.create_index(
        "uq_volumes_owner_live_name",
        "volumes",
        ["owner", "name"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_table(
        "instance_volumes",
        sa.Column("instance_id", sa.String(40), nullable=False),
        sa.Column("volume_id", sa.String(40), nullable=False),
        sa.Column("mount_point", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["instance_id"], ["instances.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("instance_id", "volume_id"),
    )
    op.create_index("ix_instance_volumes_volume_id", "instance_volumes", ["volume_id"])
    op.create_table(
        "volume_billing_periods",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("volume_name", sa.String(63), nullable=False),
        sa.Column("region", sa.String(120), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("price_per_hour", sa.Float(), nullable=False),
        sa.Column("started_at", when(), nullable=False),
        sa.Column("ended_at", when(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_volume_billing_periods_volume_id", "volume_billing_periods", ["volume_id"])
    op.create_index("ix_volume_billing_periods_ended_at", "volume_billing_periods", ["ended_at"])
    op.create_index("ix_volume_billing_periods_owner_ended", "volume_billing_periods", ["owner", "ended_at"])


def downgrade() -> None:
    op.drop_table("volume_billing_periods")
    op.drop_table("instance_volumes")
    op.drop_table("volumes")
