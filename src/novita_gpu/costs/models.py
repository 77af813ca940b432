"""Tables of the costs domain: the billing ledger, budgets, and events that belong to an API key.

None of them references `instances`: cost history and budget events are kept when HISTORY_RETENTION_DAYS
deletes an instance's record, so a month's spend never drops because old records went.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novita_gpu.db import Base, UTCDateTime


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
    """An event of an API key rather than of an instance (`budget.exceeded`), with its webhook body."""

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_account_events_owner", "owner", "id"),)


class AccountWebhook(Base):
    """The outbox of account events: one delivery per (event, receiver), as `webhook_deliveries` for
    instance events."""

    __tablename__ = "account_webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # also the webhook-id header
    event_id: Mapped[int] = mapped_column(ForeignKey("account_events.id", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(String(64))
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

    __table_args__ = (
        Index("ix_account_webhooks_pending", "status", "next_attempt_at"),
        Index("ix_account_webhooks_event", "event_id"),
    )
