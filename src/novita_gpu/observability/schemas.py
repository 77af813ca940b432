"""The shapes of /health's and /api/metrics' answers, for the OpenAPI document (a test holds them true)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from novita_gpu.kit.schemas import Answer


class EmulatorNote(Answer):
    url: str | None
    note: str


class FailingReceiver(Answer):
    receiver: str = Field(description="scheme://host[:port]: every webhook URL there counts as one receiver")
    pending: int = Field(description="Its pending deliveries, failed or waiting behind one that failed.")
    failing: int = Field(description="Its pending deliveries that have failed at least once.")
    oldest_pending_seconds: float
    last_status_code: int | None = Field(description="null: no answer (no connection, no address, a timeout)")
    last_error: str | None = Field(description="The latest failure's error, e.g. could not resolve the host name.")


class WebhooksCheck(Answer):
    """Degraded only when the service fails to deliver, not when a receiver does (docs/observability.md)."""

    status: Literal["up", "degraded", "unknown"] = Field(
        description="degraded: deliveries that could be attempted have waited over 2 minutes (the dispatcher "
        "is stuck or far behind), or most receivers cannot be reached (this service's network or DNS). A "
        "receiver that is down or misconfigured only shows in failingReceivers. unknown: the store failed."
    )
    pending: int | None = None
    oldest_pending_seconds: float | None = Field(None, description="Age of the oldest pending delivery.")
    oldest_due_seconds: float | None = Field(
        None, description="How long the longest-waiting delivery that could be attempted now has been due."
    )
    failing_receivers: int | None = Field(None, description="Receivers with deliveries that failed and are retried.")
    unreachable_receivers: int | None = Field(
        None, description="Failing receivers whose latest attempt got no answer at all."
    )
    receivers: list[FailingReceiver] | None = Field(
        None,
        description="The failing receivers (up to 10, most pending first), only for an administrator: an "
        "ADMIN_API_KEYS key, or anybody when the service has no API keys.",
    )
    reason: str | None = Field(None, description="Why degraded.")
    error: str | None = None


class HealthChecks(Answer):
    database: dict[str, Any]
    webhooks: WebhooksCheck
    novita_api: dict[str, Any]
    cache: dict[str, Any]
    workers: dict[str, Any] = Field(description="One entry per worker, or {status: disabled}.")
    instances: dict[str, Any] | None = Field(
        None, description="Rows past their deadline, failed stops or deletes still retried (absent without the store)."
    )


class HealthAnswer(Answer):
    status: Literal["healthy", "degraded", "unhealthy"] = Field(description="unhealthy answers 503")
    timestamp: datetime
    uptime: float = Field(description="Seconds since the service started.")
    version: str
    mode: Literal["emulator", "novita"]
    services: HealthChecks = Field(description="One check each.")
    emulator: EmulatorNote | None = None


class MetricsAnswer(Answer):
    requests: dict[str, Any] = Field(description="total, byStatus, byRoute (count, p50/p95/p99 in ms)")
    latency: dict[str, float | None] = Field(description="p50/p95/p99 of all requests, in ms")
    upstream: dict[str, Any] = Field(description="calls and errors to Novita, byOutcome, byEndpoint")
    instances: dict[str, Any] = Field(description="total and byStatus")
    readiness: dict[str, Any] = Field(description="count and p50/p95/p99 of create-to-ready, in seconds")
    webhooks: dict[str, Any] = Field(description="delivered, failedAttempts, gone, expired, backlog, lag")
    auto_stop: dict[str, int] = Field(description="stopped, deleted, wouldStop, failed")
    cache: dict[str, Any] = Field(description="hits, misses, hitRatio, byCache")
    retention: dict[str, int] = Field(description="instances, webhookDeliveries, idempotencyKeys, auditEvents deleted")
    spot: dict[str, Any] = Field(description='reclaims seen, and recoveries ended by "path:outcome"')
