"""The one way a background job runs here: a step again and again, a pause between, a graceful stop.

The reconciler, the prober, the webhook dispatcher, the auto-stop sweeper and the retention sweep each
say what one step does and how long to pause after it; this base runs the loop, wakes it early on
`wake()`, keeps `last_run_at` for /health, and on `stop()` lets the step in progress finish and then
calls `finish()` (work in flight ends or is handed back, leases are released), so a replica shutting
down leaves nothing for the others to wait out. A worker that looks at the store every so many seconds
of its settings starts from `StoreWorker`, which holds the store and the settings and derives its retry
and its /health allowance from that cadence.

A worker is woken one way: `services.py` subscribes its `wake` to a `Signal` (signals.py).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from novita_gpu.kit.clock import Clock

if TYPE_CHECKING:
    from novita_gpu.kit.db import Database
    from novita_gpu.kit.settings import Settings

log = structlog.get_logger(__name__)


def worker_status(last: datetime | None, now: datetime, allowed_gap: float) -> dict[str, Any]:
    """up / stalled from a worker's last run (starting before its first)."""
    if last is None:
        return {"status": "starting"}
    age = (now - last).total_seconds()
    return {"status": "up" if age <= allowed_gap else "stalled", "lastRunSecondsAgo": round(age, 1)}


class PeriodicWorker(ABC):
    name: str = "worker"
    # After an early wake-up, a step starts at least this long after the previous one began, so a burst
    # of wake-ups (one per request) shares one step.
    min_gap_seconds: float = 0.0
    # Pause after a step that raised.
    retry_seconds: float = 1.0
    # Pauses that are domain time (an idle deadline, a retention period) run on the injected clock;
    # the others are cadence (how often to look) and run in real time.
    pauses_on_clock: bool = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.last_run_at: datetime | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    @abstractmethod
    def allowed_gap(self) -> float:
        """Seconds without a step after which /health calls the worker stalled."""

    @abstractmethod
    async def step(self) -> float:
        """Do one round of work; return how many seconds to pause before the next."""

    async def finish(self) -> None:  # noqa: B027 (an optional hook: most workers hold nothing in flight)
        """Called once when the loop ends: end or hand back work still in flight."""

    def wake(self, _about: object = None) -> None:
        """Start the next step now rather than after the pause; many calls before it starts make one step.
        Takes (and ignores) what a signal was about, so `signal.subscribe(worker.wake)` wires it."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to end after the step in progress (then `finish()` runs)."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.stopping:
                started = loop.time()
                try:
                    pause = await self.step()
                except Exception:  # a bad step must not end the worker; the next one retries
                    log.exception("worker_step_failed", worker=self.name)
                    pause = self.retry_seconds
                if self.stopping:
                    break
                await self._pause(pause)
                gap = started + self.min_gap_seconds - loop.time()
                if gap > 0 and not self.stopping:
                    await asyncio.sleep(gap)
                self._wake.clear()
        finally:
            await self.finish()

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less when woken."""
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds) if self.pauses_on_clock else asyncio.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            # Their own cancellations come back as results; a cancel of this worker's task goes on up, so a
            # worker cancelled while it was waking up is not left running.
            await asyncio.gather(sleeper, waker, return_exceptions=True)


class StoreWorker(PeriodicWorker):
    """A worker over the store that looks again every `check_seconds` (a setting) when nothing sooner is
    due: it holds the store and the settings, retries a step that raised one check later, and /health
    calls it stalled after three checks and half a minute more without a step."""

    def __init__(self, db: Database, clock: Clock, settings: Settings, check_seconds: float) -> None:
        super().__init__(clock)
        self.db = db
        self.settings = settings
        self.check_seconds = check_seconds
        self.retry_seconds = check_seconds

    @property
    def allowed_gap(self) -> float:
        return self.check_seconds * 3 + 30


async def stop_workers(workers: list[PeriodicWorker], tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Graceful stop: every worker ends its step and finishes within `grace` seconds, or is cancelled."""
    for worker in workers:
        worker.stop()
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            log.warning("worker_stop_timed_out", worker=task.get_name())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
