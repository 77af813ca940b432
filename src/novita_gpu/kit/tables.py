"""Every table of the store, in one place (the migrations in migrations/versions/ create them).

- Instances: the instance row (its goal and progress), its events, idempotency keys, and Novita's
  listing shared by replicas.
- Webhooks: the outbox, one delivery row per (event, target) of an instance's or an API key's event,
  written with the event, and each delivery attempt.
- Costs: the billing ledger, budgets, and events that belong to an API key. None of them references
  `instances`: cost history and budget events (and their deliveries) are kept when
  HISTORY_RETENTION_DAYS deletes an instance's record, so a month's spend never drops because old
  records went.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from novita_gpu.kit.db import Base, UTCDateTime

# -- instances ---------------------------------------------------------------------------------------


# A pool member's `pool_state` while it is idle (the pool keeps it ready or stopped), as against `claimed`.
POOL_IDLE_STATES = ("ready", "stopped")


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(63))
    upstream_name: Mapped[str] = mapped_column(String(120), unique=True)

    status: Mapped[str] = mapped_column(String(20), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(40))
    status_message: Mapped[str | None] = mapped_column(Text)
    upstream_status: Mapped[str | None] = mapped_column(String(20))
    novita_instance_id: Mapped[str | None] = mapped_column(String(64), index=True)

    # What was asked for.
    product_name: Mapped[str] = mapped_column(String(120))
    product_id: Mapped[str | None] = mapped_column(String(120))
    template_id: Mapped[str] = mapped_column(String(64))
    image_url: Mapped[str] = mapped_column(Text)
    image_auth_id: Mapped[str | None] = mapped_column(String(120))
    # Novita network storages to mount: [{id, mountPoint}] (sent at create, shown in the view).
    network_storages: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    command: Mapped[str | None] = mapped_column(Text)
    ports: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    envs: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # secret: never returned
    gpu_num: Mapped[int] = mapped_column(Integer)
    rootfs_size: Mapped[int] = mapped_column(Integer)
    regions: Mapped[list[str]] = mapped_column(JSON)  # preferred first; empty = any
    strict_region: Mapped[bool] = mapped_column(default=False)
    billing_mode: Mapped[str] = mapped_column(String(16))
    max_price_per_hour: Mapped[float | None]
    webhook_url: Mapped[str | None] = mapped_column(Text)
    auto_stop_minutes: Mapped[int] = mapped_column(Integer)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    health_check_path: Mapped[str | None] = mapped_column(String(512))

    # Auto-stop policy (autostop/policy.py): what counts as idle, what happens then, and a hard runtime limit.
    auto_stop_signal: Mapped[str] = mapped_column(String(16), default="lastUsed", server_default="lastUsed")
    auto_stop_gpu_below: Mapped[float] = mapped_column(Float, default=5.0, server_default=text("5"))
    auto_stop_action: Mapped[str] = mapped_column(String(16), default="stop", server_default="stop")
    max_runtime_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The GPU poller's next look and last verdict, and what decided an auto-stop (shown in the view). The
    # poller writes these without bumping `version`: they are observations, and the reconciler's guarded
    # writes never touch them.
    gpu_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    gpu_check: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    auto_stop_decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    # The billing meter (costs/meter.py): the open billed stretch (None: Novita bills nothing now), and the
    # billed time and cost so far as of `accrued_at` (closed stretches, plus the open one up to then).
    billing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    billed_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    accrued_cost_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    accrued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Spot recovery (instances/recovery.py): the policy (null: the server's SPOT_* defaults), the recovery
    # under way and those before it, and which of the record's upstream names the next create uses.
    recovery_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    recovery: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    upstream_generation: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    # Warm pools (pools/): the pool it belongs to, and its part there: `ready` or `stopped` (an idle member
    # the pool keeps so), `claimed` (handed out: an ordinary instance that may be returned). A stopped idle
    # member's kept disk is billed from `disk_since` at `disk_price_per_hour` (costs/meter.py).
    pool_id: Mapped[str | None] = mapped_column(String(40), index=True)
    pool_name: Mapped[str | None] = mapped_column(String(40))
    pool_state: Mapped[str | None] = mapped_column(String(16))
    disk_price_per_hour: Mapped[float | None] = mapped_column(Float)
    disk_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Where it landed and what we saw.
    cluster_id: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(120))
    price_per_hour: Mapped[float | None]
    connection_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    health_check: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    # The goal and the pending upstream call (intent is written before Novita is called).
    desired_state: Mapped[str] = mapped_column(String(16))  # running | stopped | terminated
    pending_action: Mapped[str | None] = mapped_column(String(16))  # create | start | stop | delete
    pending_reason: Mapped[str | None] = mapped_column(String(40))
    operation_id: Mapped[str | None] = mapped_column(String(40))
    action_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    create_attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    capacity_wait_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    phase_deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Optimistic concurrency (API writes bump it) and worker leases.
    version: Mapped[int] = mapped_column(Integer, default=1)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Names are unique among an owner's live instances, so by-name operations are never ambiguous.
        Index(
            "uq_instances_owner_live_name",
            "owner",
            "name",
            unique=True,
            sqlite_where=text("status != 'terminated'"),
            postgresql_where=text("status != 'terminated'"),
        ),
        Index("ix_instances_owner_created", "owner", "created_at", "id"),
    )


class InstanceEvent(Base):
    __tablename__ = "instance_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    # The webhook body of this change as it was then (the event stream replays it); None before 0004.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class UpstreamListing(Base):
    """Novita's instance list as the replica that last listed it saw it (one row, id 1), so that replicas
    list Novita once between them rather than each on its own (instances/shared_listing.py)."""

    __tablename__ = "upstream_listing"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when that listing began
    listed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when it ended
    body: Mapped[bytes | None] = mapped_column(LargeBinary)  # zlib of [[id, name, status, error, reclaimed]]
    lister: Mapped[str | None] = mapped_column(String(64))  # the reconciler listing now
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Which Novita the store's instances live in (store_upstream.py): `novita`, `emulator <account>`.
    upstream: Mapped[str | None] = mapped_column(String(200))


# -- webhooks ----------------------------------------------------------------------------------------

# A delivery is of an instance's event or of an API key's event: exactly one of the two links is set.
ONE_EVENT = (
    "(instance_id IS NOT NULL AND event_id IS NOT NULL AND account_event_id IS NULL)"
    " OR (instance_id IS NULL AND event_id IS NULL AND account_event_id IS NOT NULL)"
)


class OutboxDelivery:
    """The columns of a webhook outbox row: where it goes, what it says, and the dispatcher's progress and
    lease (webhooks/dispatcher.py)."""

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # also the webhook-id header
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))  # pending | delivered | gone | expired
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(OutboxDelivery, Base):
    """The one outbox: a delivery of an instance's status change (`instance_id` and `event_id`) or of an API
    key's event (`account_event_id`, e.g. budget.exceeded), never both. An account event's delivery
    references no instance, so deleting an instance's record (retention) never takes it along."""

    __tablename__ = "webhook_deliveries"

    instance_id: Mapped[str | None] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    # NULL on an account event's delivery too; typed `int` for the readers of an instance's history, which
    # select its deliveries by `instance_id` (instances/rendering.py) and so only ever see one.
    event_id: Mapped[int] = mapped_column(ForeignKey("instance_events.id", ondelete="CASCADE"), nullable=True)
    account_event_id: Mapped[int | None] = mapped_column(ForeignKey("account_events.id", ondelete="CASCADE"))

    __table_args__ = (
        Index("ix_webhook_deliveries_pending", "status", "next_attempt_at"),
        # Delivery order per instance and target follows the event id.
        Index("ix_webhook_deliveries_instance", "instance_id", "url", "event_id"),
        Index("ix_webhook_deliveries_event", "event_id"),  # deleting an event cascades through it
        Index("ix_webhook_deliveries_account_event", "account_event_id"),  # a key's events with their deliveries
        CheckConstraint(ONE_EVENT, name="ck_webhook_deliveries_one_event"),
    )


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column()


# -- costs -------------------------------------------------------------------------------------------


class BillingPeriod(Base):
    """One closed stretch of time Novita billed an instance for, at the price it was created at."""

    __tablename__ = "billing_periods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(40), index=True)
    owner: Mapped[str] = mapped_column(String(64))
    instance_name: Mapped[str] = mapped_column(String(63))
    product_name: Mapped[str] = mapped_column(String(120))
    billing_mode: Mapped[str] = mapped_column(String(16))
    gpu_num: Mapped[int] = mapped_column(Integer)
    price_per_hour: Mapped[float] = mapped_column(Float)  # USD for the whole instance
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The pool (its id) whose idle member this was then: its cost is the pool's idle cost. And what was
    # billed: `gpu` (the instance) or `disk` (a stopped idle member's kept disk, at `price_per_hour`).
    pool: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(8), default="gpu", server_default="gpu")

    __table_args__ = (Index("ix_billing_periods_owner_ended", "owner", "ended_at"),)


class Budget(Base):
    """A monthly spending limit of one API key (its owner id) and what happens when spend reaches it."""

    __tablename__ = "budgets"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    monthly_limit_usd: Mapped[float] = mapped_column(Float)
    on_exceeded: Mapped[str] = mapped_column(String(16))  # refuseCreates | stopAll
    webhook_url: Mapped[str | None] = mapped_column(Text)
    set_by_admin: Mapped[bool] = mapped_column(Boolean)  # then only an admin key may change it
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    exceeded_month: Mapped[str | None] = mapped_column(String(7))  # "2026-11": budget.exceeded sent for it
    exceeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccountEvent(Base):
    """An event of an API key rather than of an instance (`budget.exceeded`), with its webhook body; its
    deliveries are rows of the one outbox, `webhook_deliveries` (`account_event_id`)."""

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_account_events_owner", "owner", "id"),)


# -- volumes -----------------------------------------------------------------------------------------


class Volume(Base):
    """A network storage at Novita (a volume): its goal and progress, like an instance's row. Its open
    billed stretch (`billing_since`, at `price_per_hour`) closes into `volume_billing_periods` at a resize
    and at its deletion."""

    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(63))
    # Its name at Novita: ours (`<name>-<8 hex>`), or the console's for an adopted storage.
    upstream_name: Mapped[str] = mapped_column(String(120), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    status_message: Mapped[str | None] = mapped_column(Text)
    storage_id: Mapped[str | None] = mapped_column(String(64), index=True)  # Novita's storageId
    cluster_id: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(120))  # the cluster's name
    size_gb: Mapped[int] = mapped_column(Integer)
    price_per_hour: Mapped[float | None] = mapped_column(Float)  # USD for the whole volume, from Novita's price
    adopted: Mapped[bool] = mapped_column(Boolean, default=False)
    create_attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set: a create may be in flight
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    action_attempts: Mapped[int] = mapped_column(Integer, default=0)
    billing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Names are unique among an owner's live volumes (deleted and failed ones free theirs).
        Index(
            "uq_volumes_owner_live_name",
            "owner",
            "name",
            unique=True,
            sqlite_where=text("status NOT IN ('deleted', 'failed')"),
            postgresql_where=text("status NOT IN ('deleted', 'failed')"),
        ),
        Index("ix_volumes_owner_created", "owner", "created_at", "id"),
    )


class InstanceVolume(Base):
    """A volume an instance mounts, and where. Written with the instance; a volume is in use while an
    instance that mounts it is not terminated."""

    __tablename__ = "instance_volumes"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    volume_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    mount_point: Mapped[str] = mapped_column(Text)


class VolumeBillingPeriod(Base):
    """One closed stretch of a volume's billing, at the size and price it had then (kept after the volume)."""

    __tablename__ = "volume_billing_periods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volume_id: Mapped[str] = mapped_column(String(40), index=True)
    owner: Mapped[str] = mapped_column(String(64))
    volume_name: Mapped[str] = mapped_column(String(63))
    region: Mapped[str] = mapped_column(String(120))
    size_gb: Mapped[int] = mapped_column(Integer)
    price_per_hour: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (Index("ix_volume_billing_periods_owner_ended", "owner", "ended_at"),)


class Team(Base):
    """A team: what instances, volumes, budgets and costs belong to (their `owner` is its id). A key of
    API_KEYS is a team of its own whose id is that key's owner id (`key-...`), so rows written before teams
    existed belong to the team of the key that made them (teams/, docs/teams.md)."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    # {maxGpus, maxUsdPerHour}: null fields are no limit (the monthly budget is the team's `budgets` row).
    quotas: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """An API key kept in the store: only the SHA-256 of its secret (a high-entropy random string, so a
    fast hash is enough), and after a rotation the previous one's until its grace ends."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    role: Mapped[str] = mapped_column(String(16))  # viewer | member | admin | owner
    prefix: Mapped[str] = mapped_column(String(16))  # the secret's first characters, to recognise it
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    previous_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """One mutating request, or one action a worker took on its own: who, on what, with what outcome."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(64))  # a key id (key-..., ak_...), or system:<worker>
    actor_name: Mapped[str | None] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str | None] = mapped_column(String(120), index=True)
    outcome: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(40))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# -- pools -------------------------------------------------------------------------------------------


class Pool(Base):
    """A warm pool: a spec, and how many idle members to keep ready and stopped (pools/, docs/pools.md).
    Its row is the lock that serialises claims, returns and refills of its members across replicas."""

    __tablename__ = "pools"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(40))
    # {productName, templateId, gpuNum, region, billingMode, volumes, rootfsSize, healthCheck}
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    min_ready: Mapped[int] = mapped_column(Integer)
    min_stopped: Mapped[int] = mapped_column(Integer)
    max_members: Mapped[int] = mapped_column(Integer)
    idle_minutes: Mapped[int] = mapped_column(Integer)
    return_on_auto_stop: Mapped[bool] = mapped_column(Boolean, default=False)
    prewarm: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {enabled, tasks: [{clusterId, id, state}]}
    status: Mapped[str] = mapped_column(String(16))  # active | draining | deleted (kept: costs name it)
    refill_blocked: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {code, message, at}
    last_claim_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "uq_pools_owner_active_name",
            "owner",
            "name",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )


class PoolClaim(Base):
    """One claim from a pool and where its instance came from (ready, stopped, warming, cold): the pool's
    claims per hour and hit rates."""

    __tablename__ = "pool_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool_id: Mapped[str] = mapped_column(String(40))
    instance_id: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_pool_claims_pool_at", "pool_id", "at"),)
