"""The shapes of /health's and /api/metrics' answers, for the OpenAPI document (a test holds them true)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from novita_gpu.schemas import Answer


class EmulatorNote(Answer):
    url: str | None
    note: str


class HealthAnswer(Answer):
    status: Literal["healthy", "degraded", "unhealthy"] = Field(description="unhealthy answers 503")
    timestamp: datetime
    uptime: float = Field(description="Seconds since the service started.")
    version: str
    mode: Literal["emulator", "novita"]
    services: dict[str, dict[str, Any]] = Field(
        description="One check each: database, webhooks, novitaApi, cache, workers (one entry per worker), "
        "instances (rows past their deadline, failed stops or deletes still retried)."
    )
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
    retention: dict[str, int] = Field(description="instances, webhookDeliveries, idempotencyKeys deleted")
