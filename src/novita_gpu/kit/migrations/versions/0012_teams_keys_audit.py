"""teams, api_keys, audit_events: keys in the store with roles, teams with quotas, and an audit trail

Every owner the store already knows (of instances, volumes, budgets, billing periods) becomes a team of
that id, so each instance, event, cost and budget stays with its owner: a key of API_KEYS keeps acting
as its own team (docs/teams.md). No existing table changes.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import novita_gpu.kit.db

revision = "0012"
down_revision = "0011"

_OWNERS = ("instances", "volumes", "budgets", "billing_periods", "volume_billing_periods")


def upgrade() -> None:
    when = novita_gpu.kit.db.UTCDateTime
    teams = op.create_table(
        "teams",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("quotas", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("created_at", when(), nullable=False),
        sa.Column("updated_at", when(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=True),
        sa.Column("previous_valid_until", when(), nullable=True),
        sa.Column("created_at", when(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("rotated_at", when(), nullable=True),
        sa.Column("last_used_at", when(), nullable=True),
        sa.Column("expires_at", when(), nullable=True),
        sa.Column("revoked_at", when(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_index("ix_api_keys_previous_hash", "api_keys", ["previous_hash"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", when(), nullable=False),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("actor_name", sa.String(63), nullable=True),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("target", sa.String(120), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("request_id", sa.String(40), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_team", "audit_events", ["team"])
    op.create_index("ix_audit_events_target", "audit_events", ["target"])

    connection = op.get_bind()
    owners: set[str] = set()
    for table in _OWNERS:
        owners.update(row[0] for row in connection.execute(sa.text(f"SELECT DISTINCT owner FROM {table}")))  # noqa: S608
    now = datetime.now(UTC)
    if owners:
        op.bulk_insert(
            teams,
            [{"id": o, "name": o[:63], "quotas": {}, "created_at": now, "updated_at": now} for o in sorted(owners)],
        )


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_index("ix_api_keys_previous_hash", "api_keys")
    op.drop_index("ix_api_keys_team_id", "api_keys")
    op.drop_table("api_keys")
    op.drop_table("teams")
