"""The webhook outbox dispatcher: delivers the `WebhookDelivery` rows, the one outbox, written with each
instance status change and with each event of an API key (`budget.exceeded`, costs/budgets.py).

At least once, in order per (instance, url): only the oldest pending delivery of a pair is eligible,
so a later event waits until the earlier one is delivered, gone or expired. An account event's delivery
(`account_event_id`, no instance) is a pair of its own: it waits for nothing and nothing waits for it.
The attempts run on the leased-work runner (kit/runner.py): the due rows are claimed under a lease (a
compare-and-set, claimable when the lease is free or expired), so replicas share the outbox and the rows
of a crashed worker are retried once its lease runs out. Each attempt runs as its own task, at most
`concurrency` at a time (the runner's slots), and the loop keeps claiming while attempts are in flight:
a slow or dead receiver holds only its own pair. At each pass the loop renews the leases that run low,
so an attempt still waiting on its receiver is never taken over by another replica. No write
transaction is open during an HTTP call; the outcome is written afterwards in the runner's guarded write,
which lands only while the lease holds and gives the lease back in the same UPDATE (the runner spends no
release on it), so a worker that lost its lease changes nothing.

A receiver that stops answering (connection refused, timeout, 502/504) would leave each of its pairs
waiting out its own backoff, up to a minute after an outage of a minute. So the first 2xx from a
receiver (scheme://host:port) that this worker found unavailable makes every message to it that is
backing off after such a failure due at once, in the same transaction: the queue drains as fast as the
receiver answers, in order per pair (only the head of a pair is ever claimed). Messages refused
otherwise (500, 4xx, 429 or 503 with their Retry-After) keep their backoff: that answer was about them,
or asked for a pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import structlog
from sqlalchemy import CursorResult, Select, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import BindParameter

from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database, UTCDateTime
from novita_gpu.kit.json_text import dump_json
from novita_gpu.kit.leases import LeasedTable
from novita_gpu.kit.retry_timing import full_jitter
from novita_gpu.kit.runner import LeaseRunner, Work
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance, WebhookAttempt, WebhookDelivery
from novita_gpu.kit.workers import PeriodicWorker
from novita_gpu.observability.metrics import Metrics
from novita_gpu.webhooks.sender import SendResult, WebhookSender
from novita_gpu.webhooks.signing import signature_headers

log = structlog.get_logger(__name__)
T = TypeVar("T")

POLL_SECONDS = 0.25
BATCH_SECONDS = 0.01
DEFAULT_CONCURRENCY = 64
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 600.0
# The lease covers one attempt (bounded by WEBHOOK_TIMEOUT_SECONDS) plus the writes around it; the loop
# renews it once half of it is gone and the attempt is still in flight.
LEASE_MARGIN_SECONDS = 5.0
EXPIRE_BATCH = 500
# Deliveries live for WEBHOOK_MAX_AGE (hours): looking for expired ones every few seconds is plenty.
EXPIRY_CHECK_INTERVAL = timedelta(seconds=5)

PENDING = "pending"
# Answers that say the receiver itself was unavailable (besides no answer at all): a gateway in front
# of it found nothing listening. 503 is left out: it may carry a Retry-After, which is always honoured.
UNAVAILABLE_STATUS_CODES = (502, 504)
# Built once: /health and /metrics run it on every call, and building a statement costs more than running it.
_BACKLOG = select(func.count(), func.min(WebhookDelivery.created_at)).where(WebhookDelivery.status == PENDING)


def retry_delay(failed_attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: exponential backoff with full jitter (up to 1, 2, 4 s ...,
    capped at 10 min), and never sooner than the receiver's Retry-After (capped the same way)."""
    delay = full_jitter(failed_attempts, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, BACKOFF_CAP_SECONDS)


def receiver_of(url: str) -> str:
    """scheme://host[:port] of a webhook URL: every URL there (any path or query) is one receiver."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _about(delivery: WebhookDelivery) -> dict[str, Any]:
    """What a delivery's log lines name besides its id: its instance, or its account event."""
    if delivery.instance_id is None:
        return {"account_event_id": delivery.account_event_id}
    return {"instance_id": delivery.instance_id}


def _unavailable(result: SendResult) -> bool:
    """The attempt failed because the receiver did not answer at all (refused, reset, timed out), or a
    gateway answered for it that it was unreachable."""
    return not result.ok and not result.gone and result.status_code in (None, *UNAVAILABLE_STATUS_CODES)


def _waiting_for(receiver: str, now: datetime) -> ColumnElement[bool]:
    """Pending messages to `receiver`, backing off after it was unavailable, not in flight."""
    url = WebhookDelivery.url
    return and_(
        WebhookDelivery.status == PENDING,
        WebhookDelivery.next_attempt_at > now,
        _lease_free(now),
        or_(
            url == receiver,
            *(url.startswith(receiver + separator, autoescape=True) for separator in ("/", "?", "#")),
        ),
        or_(
            WebhookDelivery.last_status_code.is_(None),
            WebhookDelivery.last_status_code.in_(UNAVAILABLE_STATUS_CODES),
        ),
    )


_LEASES = LeasedTable(WebhookDelivery)


def _lease_free(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return _LEASES.free(now)


def _due_deliveries(column: InstrumentedAttribute[T]) -> Select[tuple[T]]:
    """`column` of the pending deliveries due at :now whose lease is free and that are the oldest pending
    one of their (instance, url), longest due first: built once, since composing it costs more than
    running it. An account event's delivery has no instance (NULL matches nothing): never blocked."""
    earlier = aliased(WebhookDelivery)
    now = bindparam("now", type_=UTCDateTime())
    blocked = (
        exists()
        .where(
            earlier.instance_id == WebhookDelivery.instance_id,
            earlier.url == WebhookDelivery.url,
            earlier.status == PENDING,
            earlier.event_id < WebhookDelivery.event_id,
        )
        .correlate(WebhookDelivery)
    )
    return (
        select(column)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now, _lease_free(now), ~blocked)
        .order_by(WebhookDelivery.next_attempt_at)
    )


_DUE = _due_deliveries(WebhookDelivery.id)
# What /health reads: since when the longest-waiting delivery that could be attempted now has been due.
_OLDEST_DUE = _due_deliveries(WebhookDelivery.next_attempt_at).limit(1)


class WebhookDispatcher(PeriodicWorker):
    name = "webhooks"
    min_gap_seconds = BATCH_SECONDS

    def __init__(
        self,
        db: Database,
        clock: Clock,
        sender: WebhookSender,
        settings: Settings,
        metrics: Metrics,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_instance_change: Callable[[str], None] | None = None,
    ) -> None:
        """`on_instance_change(instance_id)` is called after a commit that changed an instance row (a 410
        clears its `webhook_url`), so in-process caches and waiters hear of it (the app's change feed)."""
        super().__init__(clock)
        self.db = db
        self.sender = sender
        self.settings = settings
        self.metrics = metrics
        self.on_instance_change = on_instance_change
        lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        # A delivery's claim is one statement per pass and its latency is the receiver's: no worker turn.
        self.runner: LeaseRunner[WebhookDelivery] = LeaseRunner(
            db,
            clock,
            _LEASES,
            lease_seconds=lease_seconds,
            slots=concurrency,
            name="webhook",
            lease_writes_take_turns=False,
        )
        self._renew_ahead = lease_seconds / 2
        self.max_age = timedelta(seconds=settings.webhook_max_age_seconds)
        self._claim_lock = asyncio.Lock()
        self._next_expiry_check = datetime.min.replace(tzinfo=UTC)
        # Receivers whose last attempt here found them unavailable: their next 2xx resumes their queue.
        self._unavailable_receivers: set[str] = set()

    # -- loop ------------------------------------------------------------------------------------

    @property
    def allowed_gap(self) -> float:
        return 30.0

    async def step(self) -> float:
        """Renew the leases of slow attempts, claim and start what is due; attempts run in the background.
        Wake-ups that arrive together (deliveries finishing, events written) share one claim
        (`min_gap_seconds`)."""
        await self._launch()
        return POLL_SECONDS

    async def finish(self) -> None:
        """Attempts in flight get one attempt's time to finish, then are cancelled and their leases given
        back, so another replica retries them at once."""
        await self.runner.drain(self.settings.webhook_timeout_seconds + 1)
        await self.runner.aclose()

    async def tick(self) -> int:
        """Claim what is due, attempt it, and return once those attempts are recorded."""
        started, running = await self._launch()
        await asyncio.gather(*running)
        return started

    async def backlog(self) -> tuple[int, float]:
        """Pending deliveries and the age in seconds of the oldest one (0 when none); also sets the gauges."""
        [(count, oldest)] = await self.db.fetch(_BACKLOG)
        age = max(0.0, (self.clock.now() - oldest).total_seconds()) if oldest is not None else 0.0
        self.metrics.set_webhook_backlog(int(count), age)
        return int(count), age

    async def oldest_due(self) -> float:
        """Seconds the longest-waiting delivery that could be attempted now (due, not in flight, the oldest
        pending one of its pair) has been due, 0 when none: how far behind the dispatchers of this store
        are, whatever the receivers answer. A receiver that fails only pushes its retries later."""
        now = self.clock.now()
        rows = await self.db.fetch(_OLDEST_DUE, {"now": now})
        return max(0.0, (now - rows[0][0]).total_seconds()) if rows else 0.0

    async def _launch(self) -> tuple[int, list[asyncio.Task[None]]]:
        """Claim the due deliveries, as many as slots are free, and start an attempt on each: how many
        were started, and those still running."""
        async with self._claim_lock:
            now = self.clock.now()
            self.last_run_at = now
            await self.runner.renew(ahead=self._renew_ahead)
            if now >= self._next_expiry_check:
                await self._expire(now)
                self._next_expiry_check = now + EXPIRY_CHECK_INTERVAL
            free = self.runner.free_slots()
            if free <= 0:
                return 0, []
            # On a plain connection: every committed change wakes this worker, and most find nothing due.
            ids = [row[0] for row in await self.db.fetch(_DUE.limit(free), {"now": now})]
            # Nobody waits on the batch, and each attempt's outcome gives its lease back.
            batch = self.runner.batch(waited_on=False, release_when_done=False)
            await self.runner.pump(
                ids, batch, now=now, where=(WebhookDelivery.status == PENDING,), deadline=None, work_for=self._attempt
            )
        return batch.started, list(batch.running)

    # -- expiry ----------------------------------------------------------------------------------

    async def _expire(self, now: datetime) -> None:
        """Give up on pending deliveries older than WEBHOOK_MAX_AGE (none of them is in flight)."""
        cutoff = now - self.max_age
        async with self.db.read() as session:
            ids = list(
                await session.scalars(
                    select(WebhookDelivery.id)
                    .where(WebhookDelivery.status == PENDING, WebhookDelivery.created_at < cutoff, _lease_free(now))
                    .limit(EXPIRE_BATCH)
                )
            )
        if not ids:
            return
        reason = f"Not delivered within WEBHOOK_MAX_AGE ({self.settings.webhook_max_age_seconds:.0f} s)."
        async with self.db.write() as session:
            result = await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == PENDING, _lease_free(now))
                .values(
                    status="expired",
                    last_error=func.coalesce(WebhookDelivery.last_error, reason),
                    lease_token=None,
                    lease_expires_at=None,
                )
                .execution_options(synchronize_session=False)
            )
        expired = cast(CursorResult[Any], result).rowcount
        for _ in range(expired):
            self.metrics.observe_webhook_delivery("expired")
        if expired:
            log.warning("webhooks_expired", count=expired)

    # -- one attempt -----------------------------------------------------------------------------

    def _attempt(self, delivery: WebhookDelivery) -> Work:
        """One attempt at a claimed delivery, run by the runner in a task of its own (a fault in it is
        logged there; the lease then runs out and the delivery is retried)."""
        token = delivery.lease_token
        assert token is not None, "a claimed row holds its token"

        async def attempt() -> bool:
            attempted_at = self.clock.now()
            result = await self._send(delivery, attempted_at)
            finished = await self._record(delivery, token, attempted_at, result)
            if finished:
                self.wake()  # the next delivery of this (instance, url) is due now
            return finished

        return attempt

    async def _send(self, delivery: WebhookDelivery, now: datetime) -> SendResult:
        body = dump_json(delivery.payload)  # a payload stored with odd text still goes out
        secrets = [secret.get_secret_value() for secret in self.settings.webhook_secret]
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Event": delivery.event,
            **signature_headers(secrets, delivery.id, int(now.timestamp()), body),
        }
        return await self.sender.send(delivery.url, body, headers)

    async def _record(self, snap: WebhookDelivery, token: str, attempted_at: datetime, result: SendResult) -> bool:
        """Write the attempt and its outcome; True when the delivery is finished (delivered, gone, expired).

        Plain UPDATE/INSERT statements guarded by the lease token: the lease makes `snap` current, and
        loading the row (with its payload) into the ORM again cost more than the delivery itself."""
        now = self.clock.now()
        attempts = snap.attempts + 1
        receiver = receiver_of(snap.url)
        back = result.ok and receiver in self._unavailable_receivers
        if back:  # at once: a failure recorded meanwhile marks it again, and one success resumes once
            self._unavailable_receivers.discard(receiver)
        elif _unavailable(result):
            self._unavailable_receivers.add(receiver)
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": result.status_code,
            "last_error": result.error,
            "lease_token": None,
            "lease_expires_at": None,
        }
        if result.ok:
            values.update(status="delivered", delivered_at=now)
            outcomes = ["delivered"]
        elif result.gone:
            values["status"] = "gone"
            outcomes = ["gone"]
        elif now >= snap.created_at + self.max_age:
            values["status"] = "expired"
            outcomes = ["failed_attempt", "expired"]
        else:
            values["next_attempt_at"] = now + timedelta(seconds=retry_delay(attempts, result.retry_after))
            outcomes = ["failed_attempt"]
        instance_changed = False
        async with self.db.worker_write() as session:
            await session.execute(
                insert(WebhookAttempt).values(
                    delivery_id=snap.id,
                    attempted_at=attempted_at,
                    status_code=result.status_code,
                    error=result.error,
                    duration_ms=result.duration * 1000,
                )
            )
            if not await self.runner.update_held(session, snap.id, token, values, WebhookDelivery.status == PENDING):
                log.info("webhook_lease_lost", delivery_id=snap.id)
                return False
            if result.gone:
                instance_changed = await self._stop_sending(session, snap)
            if back:
                await self._resume(session, receiver, now, snap)
        if instance_changed and self.on_instance_change is not None and snap.instance_id is not None:
            self.on_instance_change(snap.instance_id)
        for outcome in outcomes:
            lag = (now - snap.created_at).total_seconds() if outcome == "delivered" else None
            self.metrics.observe_webhook_delivery(outcome, lag)
        if not result.ok:
            log.info(
                "webhook_attempt_failed",
                delivery_id=snap.id,
                **_about(snap),
                status_code=result.status_code,
                error=result.error,
                attempts=attempts,
                outcome=outcomes[-1],
            )
        return "status" in values

    async def _stop_sending(self, session: AsyncSession, row: WebhookDelivery) -> bool:
        """410 Gone: this and every later pending delivery of the pair are gone; an instance's own URL
        is cleared so no new deliveries are written to it (returns True when it was). An account event's
        delivery is a pair of its own: only it is gone."""
        log.warning("webhook_gone", delivery_id=row.id, **_about(row))
        if row.instance_id is None:
            return False
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.instance_id == row.instance_id,
                WebhookDelivery.url == row.url,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.event_id > row.event_id,
            )
            .values(
                status="gone",
                last_error=f"Not sent: the receiver answered 410 Gone to delivery {row.id}.",
                lease_token=None,
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        cleared = await session.execute(
            update(Instance)
            .where(Instance.id == row.instance_id, Instance.webhook_url == row.url)
            .values(webhook_url=None)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], cleared).rowcount > 0

    async def _resume(self, session: AsyncSession, receiver: str, now: datetime, row: WebhookDelivery) -> None:
        """The receiver answers again: its messages backing off after it was unavailable are due now
        (the claim still takes only the oldest pending one of each pair, so order holds)."""
        resumed = await session.execute(
            update(WebhookDelivery)
            .where(_waiting_for(receiver, now))
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
        count = cast(CursorResult[Any], resumed).rowcount
        log.info("webhook_receiver_back", delivery_id=row.id, resumed=count, **_about(row))
