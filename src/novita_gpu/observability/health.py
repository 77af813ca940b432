"""The checks behind GET /health (served by observability/router.py): real, cheap enough to be called often.

unhealthy (HTTP 503): the store does not answer. degraded (HTTP 200): Novita failing, cache fallen back
to in-process, a worker not ticking, the service failing to deliver webhooks, or instances past their
deadline. Novita is judged from recent calls.

Webhooks: a receiver that is down, does not resolve or refuses a message is its owner's problem, not the
service's: its deliveries are retried on their own schedule without holding anyone else's, so it is
reported (failingReceivers, and for an administrator which ones and why) but degrades nothing. The
service itself is failing when deliveries that could be attempted now wait unattempted (the dispatcher
is stuck, or far behind), or when it cannot reach most of the receivers it sends to (its own network
or DNS, more likely than every receiver at once). Every delivery of the one outbox counts: of an
instance's status change or of an API key's event (budget.exceeded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import Row, bindparam, case, func, select

from novita_gpu import __version__
from novita_gpu.kit.tables import WebhookDelivery

if TYPE_CHECKING:
    from novita_gpu.services import Services

log = structlog.get_logger(__name__)

# A delivery that could be attempted (due, not in flight, first of its pair) waiting longer than this
# means the dispatcher is stuck or far behind: it polls every 0.25 s and runs 64 attempts at once.
WEBHOOK_DUE_DEGRADED = timedelta(minutes=2)
# At least this many receivers, and this share of those the service sends to, unreachable (no answer at
# all): more likely this service's network or DNS than every receiver at once.
UNREACHABLE_MIN_RECEIVERS = 3
UNREACHABLE_SHARE_DEGRADED = 0.8
# A receiver "the service sends to": one with pending deliveries, or one delivered to this recently.
RECENT_DELIVERIES = timedelta(minutes=15)
RECEIVERS_LISTED = 10

_D = WebhookDelivery
_PENDING = "pending"
# Pending deliveries per URL: how many, since when, and how many have failed at least once.
_PENDING_BY_URL = (
    select(_D.url, func.count(), func.min(_D.created_at), func.count(case((_D.attempts > 0, 1))))
    .where(_D.status == _PENDING)
    .group_by(_D.url)
)
# The latest failure per URL: of its failed pending deliveries, the one whose retry comes last.
_FAILED = (
    select(
        _D.url,
        _D.next_attempt_at,
        _D.last_status_code,
        _D.last_error,
        func.row_number().over(partition_by=_D.url, order_by=_D.next_attempt_at.desc()).label("latest"),
    )
    .where(_D.status == _PENDING, _D.attempts > 0)
    .subquery()
)
_LATEST_FAILURES = select(
    _FAILED.c.url, _FAILED.c.next_attempt_at, _FAILED.c.last_status_code, _FAILED.c.last_error
).where(_FAILED.c.latest == 1)
# URLs delivered to recently (the index on status, next_attempt_at narrows it; a delivered row keeps the
# time its last attempt was due).
_DELIVERED_TO = select(_D.url).where(_D.status == "delivered", _D.next_attempt_at >= bindparam("since")).distinct()


def receiver_name(url: str) -> str:
    """scheme://host[:port] of a webhook URL, never its path, query or credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass
class _Receiver:
    pending: int = 0
    failing: int = 0
    oldest: datetime | None = None
    latest_retry: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None

    def view(self, name: str, now: datetime) -> dict[str, Any]:
        oldest = max(0.0, (now - self.oldest).total_seconds()) if self.oldest is not None else 0.0
        return {
            "receiver": name,
            "pending": self.pending,
            "failing": self.failing,
            "oldestPendingSeconds": round(oldest, 1),
            "lastStatusCode": self.last_status_code,
            "lastError": self.last_error,
        }


async def webhooks_check(services: Services, pending_by_url: Sequence[Row[Any]], detailed: bool) -> dict[str, Any]:
    """The `webhooks` check (see the module's docstring) from the rows of _PENDING_BY_URL; also sets the
    backlog gauges (as the dispatcher's `backlog()` does, from the same pass over the pending rows).
    `detailed`: name the failing receivers."""
    db, now = services.db, services.clock.now()
    receivers: dict[str, _Receiver] = {}
    failed_urls = 0
    for url, count, oldest, failing in pending_by_url:
        receiver = receivers.setdefault(receiver_name(url), _Receiver())
        receiver.pending += count
        receiver.failing += failing
        receiver.oldest = oldest if receiver.oldest is None else min(receiver.oldest, oldest)
        failed_urls += failing > 0
    pending = sum(r.pending for r in receivers.values())
    first = min((r.oldest for r in receivers.values() if r.oldest is not None), default=None)
    oldest_age = max(0.0, (now - first).total_seconds()) if first is not None else 0.0
    services.metrics.set_webhook_backlog(pending, oldest_age)
    check: dict[str, Any] = {
        "status": "up",
        "pending": pending,
        "oldestPendingSeconds": round(oldest_age, 1),
        "oldestDueSeconds": 0.0,
        "failingReceivers": 0,
        "unreachableReceivers": 0,
    }
    if detailed:
        check["receivers"] = []
    if not pending:  # the common case costs one query
        return check
    due = await services.dispatcher.oldest_due()
    check["oldestDueSeconds"] = round(due, 1)
    if failed_urls:
        for url, retry_at, status_code, error in await db.fetch(_LATEST_FAILURES):
            receiver = receivers.setdefault(receiver_name(url), _Receiver())
            if receiver.latest_retry is None or retry_at > receiver.latest_retry:
                receiver.latest_retry, receiver.last_status_code, receiver.last_error = retry_at, status_code, error
    failing = {name: r for name, r in receivers.items() if r.failing}
    # Unreachable: its latest failure had no answer at all (no connection, no name, refused, timed out).
    unreachable = sum(1 for r in failing.values() if r.last_status_code is None)
    check["failingReceivers"] = len(failing)
    check["unreachableReceivers"] = unreachable
    if detailed:
        worst = sorted(failing.items(), key=lambda item: (-item[1].pending, item[0]))[:RECEIVERS_LISTED]
        check["receivers"] = [receiver.view(name, now) for name, receiver in worst]
    reasons = []
    if due > WEBHOOK_DUE_DEGRADED.total_seconds():
        reasons.append(
            f"A delivery has been due for {due:.0f} s without being attempted: the dispatcher is stuck or far behind."
        )
    if unreachable >= UNREACHABLE_MIN_RECEIVERS:
        since = now - RECENT_DELIVERIES
        active = set(receivers) | {receiver_name(url) for (url,) in await db.fetch(_DELIVERED_TO, {"since": since})}
        if unreachable >= UNREACHABLE_SHARE_DEGRADED * len(active):
            reasons.append(
                f"{unreachable} of the {len(active)} receivers sent to cannot be reached: check this service's "
                "network and DNS."
            )
    if reasons:
        check["status"] = "degraded"
        check["reason"] = " ".join(reasons)
    return check


async def check_health(services: Services, *, detailed: bool = False) -> tuple[int, dict[str, Any]]:
    """`detailed`: the caller may see which webhook receivers fail (they belong to every API key)."""
    settings = services.settings
    now = services.clock.now()
    checks: dict[str, Any] = {}
    try:
        # The webhook backlog query doubles as the database round trip (timed for real, whatever the clock).
        started = time.perf_counter()
        async with asyncio.timeout(2.0):  # a context, not wait_for: no extra task, no extra loop pass
            pending_by_url = await services.db.fetch(_PENDING_BY_URL)
        latency = time.perf_counter() - started
        checks["database"] = {"status": "up", "latencyMs": round(latency * 1000, 2)}
    except Exception as exc:  # the store is what everything stands on
        checks["database"] = {"status": "down", "error": type(exc).__name__}
        checks["webhooks"] = {"status": "unknown"}
    else:
        try:
            async with asyncio.timeout(2.0):
                checks["webhooks"] = await webhooks_check(services, pending_by_url, detailed)
        except Exception as exc:
            log.warning("health_webhooks_check_failed", error=str(exc)[:200], error_type=type(exc).__name__)
            checks["webhooks"] = {"status": "unknown", "error": type(exc).__name__}
    checks["novitaApi"] = {**services.upstream_health.status(), "mode": settings.mode}
    checks["cache"] = await services.caches.health()
    checks["workers"] = services.worker_health(now) if settings.workers_enabled else {"status": "disabled"}
    if checks["database"]["status"] == "up":
        checks["instances"] = await services.reconciler.overdue()

    if checks["database"]["status"] != "up":
        status = "unhealthy"
    elif (
        checks["novitaApi"]["status"] in ("down", "degraded")
        or checks["cache"]["status"] != "up"
        or checks["webhooks"]["status"] != "up"
        or checks.get("instances", {}).get("status") == "degraded"
        or any(isinstance(w, dict) and w.get("status") == "stalled" for w in checks["workers"].values())
    ):
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "uptime": round(services.clock.monotonic() - services.started_monotonic, 3),
        "version": __version__,
        "mode": settings.mode,
        "services": checks,
    }
    if settings.emulator_mode:
        body["emulator"] = {
            "url": services.emulator_url,
            "note": "NOVITA_API_KEY is not set: using the built-in emulator",
        }
    return (503 if status == "unhealthy" else 200), body
