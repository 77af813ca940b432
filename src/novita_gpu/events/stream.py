"""The event stream's source: one reader of `instance_events` per process, fanned out to bounded queues.

Why one poller rather than LISTEN/NOTIFY: every status change already commits an `instance_events` row
(with its webhook body, migration 0004) on SQLite and PostgreSQL alike, so reading `id > horizon` every
EVENT_STREAM_POLL_SECONDS works on both stores, needs no change to the write path, no extra connection
held outside the pool, and no reconnection logic for a lost listener; a NOTIFY would only say "look
now", and the rows would have to be read anyway. The poller runs only while somebody is subscribed, and
a local commit (ChangeFeed pulse) wakes it at once, so on one replica events arrive in milliseconds and
from another replica within one poll interval. Its cost does not depend on the number of subscribers:
one query per interval, each event encoded once and the same bytes queued to every matching stream.

Nothing lost, nothing repeated: the poller publishes events strictly in id order, and `horizon` is the
id up to which every event that will ever exist has been seen. On PostgreSQL ids are taken from a
sequence when a row is inserted, not when it commits, so id 11 can be visible while id 10 is still in
an open transaction (or was rolled back and never will be). The poller holds everything after such a
gap until it is filled or known to be permanent: it notes which transactions held a RowExclusiveLock on
`instance_events` right after it saw the gap (an INSERT takes that lock before it draws its id, and
keeps it until it ends), and once none of them is still running, whatever is still missing never comes
(after GAP_MAX_WAIT_SECONDS at the latest). SQLite has one writer at a time, so its ids commit in order.
A new stream registers, takes the current horizon as the end of its backfill from the store, and gets
from its queue only what is published after: the two meet exactly.

A stream whose queue holds EVENT_STREAM_BUFFER events is closed with the reason SLOW_READER (its queue
is dropped); its client resumes with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from sqlalchemy import bindparam, func, select, text

from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.rendering import rebuilt_event_payload
from novita_gpu.kit.db import Database, table_of
from novita_gpu.kit.errors import ShuttingDown, TooManyStreams
from novita_gpu.kit.json_text import servable
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance, InstanceEvent

log = structlog.get_logger(__name__)

READ_BATCH = 200  # events per store read; published in one pass of the loop, then the loop turns
GAP_MAX_WAIT_SECONDS = 10.0  # a transaction holding an event id longer than this is not waited for
LINGER_SECONDS = 5.0  # the poller outlives its last subscriber this long: a reconnect finds it running
SETTLE_TIMEOUT_SECONDS = 15.0

_EVENTS = table_of(InstanceEvent)
_INSTANCES = table_of(Instance)
_COLUMNS = (
    _EVENTS.c.id,
    _EVENTS.c.instance_id,
    _EVENTS.c.payload,
    _INSTANCES.c.owner,
    _EVENTS.c.created_at,
    _EVENTS.c.from_status,
    _EVENTS.c.to_status,
    _EVENTS.c.reason,
    _EVENTS.c.message,
)
_JOINED = _EVENTS.join(_INSTANCES, _INSTANCES.c.id == _EVENTS.c.instance_id)
_READ = (
    select(*_COLUMNS)
    .select_from(_JOINED)
    .where(_EVENTS.c.id > bindparam("after"))
    .order_by(_EVENTS.c.id)
    .limit(bindparam("limit"))
)
_BACKFILL_BASE = (
    select(*_COLUMNS)
    .select_from(_JOINED)
    .where(
        _EVENTS.c.id > bindparam("after"),
        _EVENTS.c.id <= bindparam("upto"),
        _INSTANCES.c.owner == bindparam("owner"),
    )
    .order_by(_EVENTS.c.id)
    .limit(READ_BATCH)
)
_BACKFILL = _BACKFILL_BASE
_BACKFILL_ONE = _BACKFILL_BASE.where(_EVENTS.c.instance_id == bindparam("instance_id"))
_MAX_ID = select(func.coalesce(func.max(_EVENTS.c.id), 0))
# Transactions that are writing instance_events now (INSERT and DELETE take this lock, SELECT does not).
_WRITERS = text(
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' "
    "AND granted AND relation = to_regclass('instance_events')"
)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One status change, ready to send: its Server-Sent Events frame is encoded once for every stream."""

    id: int
    instance_id: str
    owner: str
    frame: bytes


class StreamClosed(Exception):
    """The server ended this stream (SLOW_READER, SHUTDOWN); the client resumes with Last-Event-ID."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sse_frame(event_id: int, event: str, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


def _event_from_row(row: Any, fallback: dict[str, Instance]) -> StreamEvent:
    payload = row.payload
    if payload is None:  # written before migration 0004
        payload = rebuilt_event_payload(
            fallback[row.instance_id], row.to_status, row.from_status, row.created_at, row.reason, row.message
        )
    data = orjson.dumps(servable(payload))
    return StreamEvent(row.id, row.instance_id, row.owner, sse_frame(row.id, str(payload["event"]), data))


async def _events_from_rows(db: Database, rows: Any) -> list[StreamEvent]:
    missing = {row.instance_id for row in rows if row.payload is None}
    fallback: dict[str, Instance] = {}
    if missing:
        async with db.read() as session:
            found = await session.execute(select(Instance).where(Instance.id.in_(missing)))
            fallback = {instance.id: instance for instance in found.scalars()}
    return [_event_from_row(row, fallback) for row in rows]


class Subscription:
    """One open stream: what it may see, and a bounded queue of what it has not sent yet."""

    __slots__ = ("_buffer", "_queue", "_ready", "_wakeup", "backfill_to", "closed", "instance_id", "owner")

    def __init__(self, owner: str, instance_id: str | None, buffer: int) -> None:
        self.owner = owner
        self.instance_id = instance_id
        self._buffer = buffer
        self._queue: deque[StreamEvent] = deque()
        self._wakeup = asyncio.Event()
        self._ready = asyncio.Event()
        self.backfill_to = 0  # valid once ready: every event up to it comes from the store, later ones from here
        self.closed: StreamClosed | None = None

    def wants(self, event: StreamEvent) -> bool:
        return event.owner == self.owner and (self.instance_id is None or event.instance_id == self.instance_id)

    def offer(self, event: StreamEvent) -> None:
        if self.closed is not None:
            return
        if len(self._queue) >= self._buffer:
            self.close(
                "SLOW_READER",
                f"The stream fell {self._buffer} events behind and was closed; reconnect with Last-Event-ID to "
                "resume from the last event received.",
            )
            return
        self._queue.append(event)
        self._wakeup.set()

    def close(self, code: str, message: str) -> None:
        if self.closed is None:
            self.closed = StreamClosed(code, message)
            self._queue.clear()  # what was queued is read from the store on resume
            self._wakeup.set()
            self._ready.set()

    def make_ready(self, horizon: int) -> None:
        self.backfill_to = horizon
        self._ready.set()

    async def ready(self, timeout: float = SETTLE_TIMEOUT_SECONDS) -> int:
        """The id up to which the stream's past comes from the store (the source's horizon when it joined)."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        if self.closed is not None:
            raise self.closed
        return self.backfill_to

    async def next(self, timeout: float) -> StreamEvent | None:
        """The next published event, or None when `timeout` passes without one (time for a heartbeat)."""
        if not self._queue and self.closed is None:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
        if self.closed is not None:
            raise self.closed
        return self._queue.popleft() if self._queue else None

    def pop(self) -> StreamEvent:
        return self._queue.popleft()

    @property
    def queued(self) -> int:
        return len(self._queue)


@dataclass
class _Gap:
    """Ids up to `covered` that were missing while `writers` held instance_events open."""

    covered: int
    writers: frozenset[str]
    since: float


class EventHub:
    """The one source of stream events in this process (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        changes: ChangeFeed,
        settings: Settings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.per_key = settings.event_streams_per_key
        self.buffer = settings.event_stream_buffer
        self.poll_seconds = settings.event_stream_poll_seconds
        self.heartbeat = settings.event_stream_heartbeat_seconds  # a stream idle this long sends a comment
        self.send_timeout = settings.send_timeout_seconds  # a write to a client that reads nothing ends there
        # A batch is queued to every stream in one pass of the loop, before any reader can drain: at most
        # half a buffer, so a reader that keeps up is never taken for a slow one.
        self.read_batch = max(1, min(READ_BATCH, self.buffer // 2))
        self.monotonic = monotonic
        self._subs: set[Subscription] = set()
        self._per_owner: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self.horizon: int | None = None  # None until the poller has read the store
        self._settled = False
        self._gap: _Gap | None = None
        self.published = 0  # events published since start (metrics, tests)
        self.polls = 0
        self._restore_signals: Callable[[], None] | None = None
        changes.subscribe(self._on_local_change)

    # -- subscribers ------------------------------------------------------------------------------

    def subscribe(self, owner: str, instance_id: str | None = None) -> Subscription:
        """Register a stream, or refuse it (TooManyStreams) when its key already has its share open here."""
        if self._closing:
            raise ShuttingDown()
        if self._per_owner[owner] >= self.per_key:
            raise TooManyStreams(
                f"This API key already has {self.per_key} event streams open on this server (the limit, "
                "EVENT_STREAMS_PER_KEY). Close one, or follow every instance with one stream: GET /api/events/stream."
            )
        sub = Subscription(owner, instance_id, self.buffer)
        self._subs.add(sub)
        self._per_owner[owner] += 1
        if self._settled and self.horizon is not None:
            sub.make_ready(self.horizon)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event-stream")
            self._chain_exit_signals()
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            self._per_owner[sub.owner] -= 1
            if self._per_owner[sub.owner] <= 0:
                del self._per_owner[sub.owner]

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def streams_of(self, owner: str) -> int:
        return self._per_owner[owner]

    async def backfill(
        self, owner: str, instance_id: str | None, after: int, upto: int
    ) -> AsyncIterator[list[StreamEvent]]:
        """The stream's past from the store: events after `after` up to `upto`, in pages, oldest first."""
        query = _BACKFILL if instance_id is None else _BACKFILL_ONE
        params: dict[str, Any] = {"owner": owner, "upto": upto}
        if instance_id is not None:
            params["instance_id"] = instance_id
        while after < upto:
            rows = await self.db.fetch(query, {**params, "after": after})
            if not rows:
                return
            page = await _events_from_rows(self.db, rows)
            after = page[-1].id
            yield page

    # -- lifecycle --------------------------------------------------------------------------------

    async def close(self, code: str = "SHUTDOWN", message: str = "The server is shutting down; reconnect.") -> None:
        """End every stream (its client reconnects elsewhere or later) and stop the poller."""
        self._closing = True
        self._end_streams(code, message)
        if self._restore_signals is not None:
            self._restore_signals()
            self._restore_signals = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _end_streams(self, code: str, message: str) -> None:
        for sub in list(self._subs):
            sub.close(code, message)

    def _chain_exit_signals(self) -> None:
        """uvicorn waits (up to 10 s) for open responses before it shuts the app down, and a stream never
        ends by itself: on SIGINT/SIGTERM end every stream first, then let uvicorn's handler run."""
        if self._restore_signals is not None or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        previous: dict[signal.Signals, Any] = {}

        def on_exit(signum: int, frame: Any) -> None:
            loop.call_soon_threadsafe(self._end_streams, "SHUTDOWN", "The server is shutting down; reconnect.")
            handler = previous.get(signal.Signals(signum))
            if callable(handler):
                handler(signum, frame)

        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            # Only over uvicorn's own handler: anywhere else (tests, embedding) signals are not ours to take.
            if getattr(getattr(handler, "__self__", None), "handle_exit", None) is None:
                continue
            previous[signum] = handler
            signal.signal(signum, on_exit)

        def restore() -> None:
            for signum, handler in previous.items():
                if signal.getsignal(signum) is on_exit:
                    signal.signal(signum, handler)

        self._restore_signals = restore

    # -- the source -------------------------------------------------------------------------------

    def _on_local_change(self, _instance_id: str | None) -> None:
        if self._task is not None:
            self._wake.set()

    async def _run(self) -> None:
        idle_since: float | None = None
        failures = 0
        try:
            while True:
                if self._subs:
                    idle_since = None
                elif idle_since is None:
                    idle_since = self.monotonic()
                elif self.monotonic() - idle_since >= LINGER_SECONDS:
                    return
                self._wake.clear()
                try:
                    await self.poll()
                    failures = 0
                except Exception as exc:  # the store is down: keep the streams, try again
                    failures += 1
                    log.warning("event_stream_poll_failed", error=str(exc)[:200], error_type=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds * min(2**failures, 20)):
                        await self._wake.wait()
        finally:
            # The next start reads the store afresh: events written while nobody listened are nobody's.
            self.horizon = None
            self._settled = False
            self._gap = None

    async def poll(self) -> None:
        """Read what was committed since the horizon and publish it, in id order."""
        self.polls += 1
        if not self._settled and not await self._settle():
            return
        assert self.horizon is not None
        for _ in range(1000):  # bounded: 1,000 batches per poll at most
            final_upto = await self._final_gaps()
            rows = await self.db.fetch(_READ, {"after": self.horizon, "limit": self.read_batch})
            events = await _events_from_rows(self.db, rows) if rows else []
            blocked = self._publish(events, final_upto)
            if blocked and self._gap is None:
                self._gap = _Gap(events[-1].id, await self._writers(), self.monotonic())
                if not self._gap.writers:
                    continue  # nobody can still fill it: read once more, and what is missing is gone
            if blocked or len(rows) < self.read_batch:
                return
            await asyncio.sleep(0)  # readers drain their queues between batches

    def _publish(self, events: list[StreamEvent], final_upto: float) -> bool:
        """Publish events in order up to the first gap that may still fill; True when one held them."""
        assert self.horizon is not None
        for event in events:
            if event.id != self.horizon + 1 and event.id - 1 > final_upto:
                return True
            if event.id != self.horizon + 1:
                log.info("event_stream_gap_final", after=self.horizon, before=event.id)
            for sub in list(self._subs):
                if sub.wants(event):
                    sub.offer(event)
            self.horizon = event.id
            self.published += 1
        return False

    async def _final_gaps(self) -> float:
        """Ids up to which a missing event is missing for good (checked before the read that relies on it)."""
        if self.db.is_sqlite:
            return float("inf")
        gap = self._gap
        if gap is None:
            return -1
        waited = self.monotonic() - gap.since
        if gap.writers and waited < GAP_MAX_WAIT_SECONDS and gap.writers & await self._writers():
            return -1
        if gap.writers and waited >= GAP_MAX_WAIT_SECONDS:
            log.warning("event_stream_gap_timeout", covered=gap.covered, waited=round(waited, 1))
        self._gap = None
        return gap.covered

    async def _writers(self) -> frozenset[str]:
        if self.db.is_sqlite:
            return frozenset()
        return frozenset(str(row[0]) for row in await self.db.fetch(_WRITERS))

    async def _settle(self) -> bool:
        """Take the store's newest event as the horizon, once every transaction that might still commit an
        older one has ended. Streams waiting to start get their backfill bound then."""
        if self.horizon is None:
            [(newest,)] = await self.db.fetch(_MAX_ID)
            self.horizon = int(newest)
            self._gap = _Gap(self.horizon, await self._writers(), self.monotonic())
        gap = self._gap
        if gap is not None and gap.writers:
            waited = self.monotonic() - gap.since
            if waited < GAP_MAX_WAIT_SECONDS and gap.writers & await self._writers():
                return False
        self._gap = None
        self._settled = True
        for sub in self._subs:
            sub.make_ready(self.horizon)
        return True
