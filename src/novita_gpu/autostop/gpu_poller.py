"""The GPU utilization poller: looks at an instance's GPUs only when its idle window is due, and records
a verdict (busy, idle, or unavailable with the reason) that the sweeper's policy decides with.

Cost. Each look is one call to Novita's metrics API for one instance, covering its whole window. An
instance is looked at once its window could be all idle: W minutes after it became ready (plus Novita's
one-minute delay), then W minutes after the latest busy sample. So a busy instance costs one call per
window, and an idle one a call or two before it is stopped. 1,000 ready instances with 30-minute windows
cost about 1000 / 30 = 33 calls a minute (0.56 a second); while Novita's metrics cannot be read, each is
looked at again every half window (at least a minute, at most 15), 67 a minute for those 1,000. Each due time gets a jitter (up to 5 % of the
window, at most a minute), calls go out at most GPU_POLL_CALLS_PER_MINUTE (a token bucket: instances due
together, e.g. after a restart, are spread over the following minutes) and GPU_POLL_CONCURRENCY at once,
and none while Novita's last 429 asks the client to wait (the client's own memory, shared with the
reconciler's calls, which thus keep their share). The call itself is retried like every read.

Never a guess: no samples, stale samples, a window not covered, gaps, or an error make the verdict
`unavailable` with the reason, and the policy falls back to lastUsed (shown in the instance's view).
Verdicts are observations: written without bumping the row's version, so the reconciler's guarded
writes never lose a turn to them.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select

from novita_gpu.autostop.policy import GPU_VERDICT_FRESH, last_used_deadline, uses_gpu
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.lifecycle import Status
from novita_gpu.instances.rendering import iso
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import Instance
from novita_gpu.kit.workers import StoreWorker
from novita_gpu.novita import MetricPoint, NovitaClient, NovitaError

log = structlog.get_logger(__name__)

MIN_INTERVAL_SECONDS = 15  # Novita's finest (and default) sampling interval
MAX_SAMPLES_PER_CALL = 240  # longer windows are asked at a coarser interval
MAX_JITTER_SECONDS = 60.0
MIN_SLEEP_SECONDS = 0.05


def sampling_interval(window_minutes: int) -> int:
    """Seconds between samples asked for: 15, or coarser so a window needs at most 240 samples."""
    wanted = window_minutes * 60 / MAX_SAMPLES_PER_CALL
    return max(MIN_INTERVAL_SECONDS, math.ceil(wanted / MIN_INTERVAL_SECONDS) * MIN_INTERVAL_SECONDS)


@dataclass(frozen=True)
class Look:
    """What one look found: a verdict and its figures (timestamps are unix seconds)."""

    state: str  # busy | idle | unavailable
    reason: str | None = None
    samples: int = 0
    avg: float | None = None
    peak: float | None = None
    busy_at: float | None = None
    first: float | None = None
    last: float | None = None


def judge(
    points: Sequence[MetricPoint], *, now: float, window_minutes: int, threshold: float, interval: int, delay: float
) -> Look:
    """The verdict on the latest window of samples. Busy as soon as one sample of the window reaches the
    threshold; idle only when samples cover the whole window, recently and without gaps, and all stay
    below it; anything else is `unavailable`, with the reason (never read as idle)."""
    if not points:
        return Look("unavailable", "NO_SAMPLES: Novita returned no GPU utilization samples for the window")
    last = points[-1].timestamp
    if now - last > delay + 3 * interval + 60:
        return Look("unavailable", f"STALE: the latest GPU sample is {now - last:.0f} s old", last=last)
    start = last - window_minutes * 60
    inside = [p for p in points if p.timestamp >= start]
    values = [p.value for p in inside]

    def look(state: str, reason: str | None = None, busy_at: float | None = None) -> Look:
        avg, peak = round(sum(values) / len(values), 2), round(max(values), 2)
        return Look(state, reason, len(inside), avg, peak, busy_at, inside[0].timestamp, last)

    busy = [p for p in inside if p.value >= threshold]
    if busy:
        return look("busy", busy_at=busy[-1].timestamp)
    if points[0].timestamp > start + 2 * interval:
        minutes = (last - points[0].timestamp) / 60
        return look("unavailable", f"PARTIAL: samples cover {minutes:.1f} of the window's {window_minutes} min")
    covered = [p for p in points if p.timestamp < start][-1:] + inside  # from the sample just before the window
    widest = max((b.timestamp - a.timestamp for a, b in itertools.pairwise(covered)), default=0.0)
    if widest > 3 * interval:
        return look("unavailable", f"GAPS: no GPU samples for {widest:.0f} s within the window")
    return look("idle")


class _Bucket:
    """Calls allowed: `rate` per second, bursts of at most `capacity` (on the injected clock)."""

    def __init__(self, clock: Clock, per_minute: float) -> None:
        self.clock = clock
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)  # ten seconds' worth
        self.tokens = self.capacity
        self.at = clock.monotonic()

    def available(self) -> int:
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return int(self.tokens)

    def take(self) -> None:
        self.tokens -= 1

    def seconds_to_next(self) -> float:
        return max(0.0, (1 - self.tokens) / self.rate)


class GpuPoller(StoreWorker):
    name = "gpu_poller"
    pauses_on_clock = True  # it sleeps until the next window is due

    def __init__(
        self,
        db: Database,
        clock: Clock,
        client: NovitaClient,
        settings: Settings,
        changes: ChangeFeed,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(db, clock, settings, settings.auto_stop_check_seconds)
        self.client = client
        self.changes = changes
        self.idle_found: Signal[str] = Signal()  # an idle verdict was written: the sweeper may end it now
        self.rng = rng or random.Random()
        self.bucket = _Bucket(clock, settings.gpu_poll_calls_per_minute)
        self.calls = 0  # metrics calls made (for tests and /health's curious)

    async def step(self) -> float:
        self.last_run_at = self.clock.now()
        if not self.settings.auto_stop_enabled:
            return self.settings.auto_stop_check_seconds
        waiting = self.client.rate_limit_wait()
        if waiting > 0:
            return waiting  # Novita asked us to slow down: the reconciler's calls come first
        await self.poll_due()
        return await self.seconds_until_next()

    # -- schedule --------------------------------------------------------------------------------

    def _jitter(self, window_minutes: int) -> timedelta:
        return timedelta(seconds=self.rng.uniform(0, min(MAX_JITTER_SECONDS, window_minutes * 60 * 0.05)))

    def _after_window(self, row: Instance, since: datetime) -> datetime:
        """When a window starting at `since` is over and its last minute has reached Novita's API; for
        signal both, not before pings have gone quiet for a window too."""
        due = since + timedelta(minutes=row.auto_stop_minutes, seconds=self.settings.gpu_metrics_delay_seconds)
        by_use = last_used_deadline(row)
        if row.auto_stop_signal == "both" and by_use is not None:
            due = max(due, by_use)
        return due + self._jitter(row.auto_stop_minutes)

    @staticmethod
    def _run_key(row: Instance) -> dict[str, Any]:
        """What a verdict is about: this ready run, under this window and threshold."""
        return {
            "readyAt": iso(row.ready_at),
            "windowMinutes": row.auto_stop_minutes,
            "thresholdPercent": row.auto_stop_gpu_below,
        }

    def _for_this_run(self, row: Instance) -> bool:
        check = row.gpu_check or {}
        return row.gpu_check_at is not None and all(check.get(k) == v for k, v in self._run_key(row).items())

    async def _watched(self, now: datetime | None = None) -> list[Instance]:
        query = select(Instance).where(
            Instance.status == Status.READY,
            Instance.auto_stop_signal.in_(("gpu", "both")),
            Instance.auto_stop_minutes > 0,
            Instance.pending_action.is_(None),
        )
        if now is not None:
            query = query.where(or_(Instance.gpu_check_at.is_(None), Instance.gpu_check_at <= now))
        async with self.db.read() as session:
            return [row for row in (await session.execute(query)).scalars() if uses_gpu(row)]

    async def seconds_until_next(self) -> float:
        """Until the next look is due (or a call is allowed again), at most one check interval."""
        interval = self.settings.auto_stop_check_seconds
        now = self.clock.now()
        rows = await self._watched()
        due = [row.gpu_check_at for row in rows if row.gpu_check_at is not None and self._for_this_run(row)]
        if any(not self._for_this_run(row) for row in rows):
            return MIN_SLEEP_SECONDS
        if not due:
            return interval
        until = (min(due) - now).total_seconds()
        if until <= 0:
            until = self.bucket.seconds_to_next()
        return min(interval, max(MIN_SLEEP_SECONDS, until))

    # -- looking ---------------------------------------------------------------------------------

    async def poll_due(self) -> int:
        """Schedule instances that became GPU-watched, and look at those due (within the call budget).
        Returns the number of calls made."""
        now = self.clock.now()
        rows = await self._watched(now)
        fresh = [row for row in rows if not self._for_this_run(row)]
        for row in fresh:
            assert row.ready_at is not None
            await self._record(row, {"state": "pending", **self._run_key(row)}, self._after_window(row, row.ready_at))
        due = sorted((row for row in rows if self._for_this_run(row)), key=lambda r: r.gpu_check_at or now)
        allowed = self.bucket.available()
        chosen = due[:allowed]
        for _ in chosen:
            self.bucket.take()
        gate = asyncio.Semaphore(self.settings.gpu_poll_concurrency)

        async def one(row: Instance) -> bool:
            async with gate:
                if self.client.rate_limit_wait() > 0:
                    return False  # a 429 arrived meanwhile: the rest wait for the next step
                await self._look(row)
                return True

        done = await asyncio.gather(*(one(row) for row in chosen))
        return sum(done)

    async def _look(self, row: Instance) -> None:
        now = self.clock.now()
        window = row.auto_stop_minutes
        interval = sampling_interval(window)
        delay = self.settings.gpu_metrics_delay_seconds
        start = now.timestamp() - delay - window * 60 - 2 * interval
        self.calls += 1
        try:
            metrics = await self.client.get_instance_metrics(
                row.novita_instance_id or "", start=start, end=now.timestamp(), interval=interval
            )
            look = judge(
                metrics.gpu_utilization.avg,
                now=now.timestamp(),
                window_minutes=window,
                threshold=row.auto_stop_gpu_below,
                interval=interval,
                delay=delay,
            )
        except NovitaError as exc:
            look = Look("unavailable", f"METRICS_ERROR: {exc.reason or exc.status}: {exc.message}"[:300])
        if look.state == "busy":
            assert look.busy_at is not None
            busy_at = datetime.fromtimestamp(look.busy_at, now.tzinfo)
            next_at = max(self._after_window(row, busy_at), now + timedelta(seconds=2 * interval))
        elif look.state == "idle":
            next_at = now + GPU_VERDICT_FRESH  # the sweeper ends it now; if not (signal both), look again
            if row.auto_stop_signal == "both" and (by_use := last_used_deadline(row)) is not None:
                next_at = max(next_at, by_use)
        else:
            retry = min(900.0, max(60.0, window * 60 / 2))
            next_at = now + timedelta(seconds=retry)
            log.info("gpu_metrics_unavailable", instance_id=row.id, reason=look.reason)
        check = {
            "state": look.state,
            "checkedAt": iso(now),
            **self._run_key(row),
            "samples": look.samples,
            "avgPercent": look.avg,
            "maxPercent": look.peak,
            "busyAt": _iso_at(look.busy_at, now),
            "from": _iso_at(look.first, now),
            "until": _iso_at(look.last, now),
            "reason": look.reason,
        }
        if await self._record(row, check, next_at) and look.state == "idle":
            self.idle_found.emit(row.id)

    async def _record(self, snap: Instance, check: dict[str, Any], next_at: datetime) -> bool:
        """Write the verdict and the next look if the row is still the run it was about (same ready time
        and policy, still ready, nothing pending); no version bump (see the module's docstring)."""
        async with self.db.worker_write() as session:
            query = self.db.locked(select(Instance).where(Instance.id == snap.id))
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None or not uses_gpu(row) or self._run_key(row) != self._run_key(snap):
                return False
            row.gpu_check = check
            row.gpu_check_at = next_at
        self.changes.pulse(snap.id)
        return True


def _iso_at(seconds: float | None, now: datetime) -> str | None:
    return None if seconds is None else iso(datetime.fromtimestamp(seconds, now.tzinfo))
