"""Auto-stop signals and limits per instance, billed time and cost, budgets and account-level events

instances: the auto-stop policy (signal lastUsed | gpu | both, the GPU idle threshold, stop or delete,
maxRuntimeMinutes), the GPU poller's last verdict and next look, what decided an auto-stop, and the
billing meter (the open billed stretch, and billed seconds and cost so far, as of accrued_at). Rows written before
keep today's behaviour: signal lastUsed, action stop, no runtime limit.

billing_periods: the ledger of closed billed stretches (one row each, never updated), kept apart from the
instance row so cost history outlives HISTORY_RETENTION_DAYS. budgets: one per API key. account_events and
account_webhooks: events that belong to a key rather than an instance (budget.exceeded) and their outbox.

Instances billing when this revision is applied start their open stretch at `started_at` (when Novita
last reported them running), else at their creation: an estimate, in the direction of counting more.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

import novita_gpu.kit.db

revision = "0006"
down_revision = "0005"

# Novita statuses it bills in (costs/meter.py BILLED, as it was when this revision was written).
_BILLED = (
    "pulling",
    "toStart",
    "starting",
    "running",
    "toRestart",
    "restarting",
    "toReset",
    "resetting",
    "migrating",
    "toStop",
    "stopping",
    "freezing",
)


def upgrade() -> None:
    # Plain ADD COLUMNs, never a batch copy: re-creating instances on SQLite would cascade-delete its events.
    columns: list[sa.Column[Any]] = [
        sa.Column("auto_stop_signal", sa.String(16), nullable=False, server_default="lastUsed"),
        sa.Column("auto_stop_gpu_below", sa.Float(), nullable=False, server_default=sa.text("5")),
        sa.Column("auto_stop_action", sa.String(16), nullable=False, server_default="stop"),
        sa.Column("max_runtime_minutes", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("gpu_check_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.Column("gpu_check", sa.JSON(), nullable=True),
        sa.Column("auto_stop_decision", sa.JSON(), nullable=True),
        sa.Column("billing_since", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.Column("billed_seconds", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("accrued_cost_usd", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("accrued_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
    ]
    for column in columns:
        op.add_column("instances", column)
    op.execute(
        sa.text(
            "UPDATE instances SET billing_since = COALESCE(started_at, created_at), "
            "accrued_at = COALESCE(started_at, created_at) "
            "WHERE status != 'terminated' AND upstream_status IN :billed"
        ).bindparams(sa.bindparam("billed", value=list(_BILLED), expanding=True))
    )

    op.create_table(
        "billing_periods",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("instance_name", sa.String(63), nullable=False),
        sa.Column("product_name", sa.String(120), nullable=False),
        sa.Column("billing_mode", sa.String(16), nullable=False),
        sa.Column("gpu_num", sa.Integer(), nullable=False),
        sa.Column("price_per_hour", sa.Float(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("started_at", novita_gpu.kit.db.UTCDateTime(), nullable=False),
        sa.Column("ended_at", novita_gpu.kit.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_billing_periods_instance_id", "billing_periods", ["instance_id"])
    op.create_index("ix_billing_periods_owner_ended", "billing_periods", ["owner", "ended_at"])
    op.create_index("ix_billing_periods_ended_at", "billing_periods", ["ended_at"])

    op.create_table(
        "budgets",
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("monthly_limit_usd", sa.Float(), nullable=False),
        sa.Column("on_exceeded", sa.String(16), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("set_by_admin", sa.Boolean(), nullable=False),
        sa.Column("updated_at", novita_gpu.kit.db.UTCDateTime(), nullable=False),
        sa.Column("exceeded_month", sa.String(7), nullable=True),
        sa.Column("exceeded_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("owner"),
    )

    op.create_table(
        "account_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("created_at", novita_gpu.kit.db.UTCDateTime(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_account_events_owner", "account_events", ["owner", "id"])

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


def downgrade() -> None:
    op.drop_table("account_webhooks")
    op.drop_table("account_events")
    op.drop_table("budgets")
    op.drop_table("billing_periods")
    for name in (
        "accrued_at",
        "accrued_cost_usd",
        "billed_seconds",
        "billing_since",
        "auto_stop_decision",
        "gpu_check",
        "gpu_check_at",
        "max_runtime_minutes",
        "auto_stop_action",
        "auto_stop_gpu_below",
        "auto_stop_signal",
    ):
        op.drop_column("instances", name)
