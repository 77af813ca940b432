"""Creates accepted by this process: sent at once, oldest first, and the backpressure on accepting more.

A create needs no listing (nothing can exist upstream under a name never sent), and a tick takes long
when many instances are watched, most of it listing Novita. So a create accepted here is claimed and sent
at once rather than at the next tick, in order as slots free up: a burst waits for slots here, rather than
the newest taking every slot that frees while older ones wait for a tick. Ticks still pick up whatever
this misses (another replica's creates, a restart).

Backpressure: while the oldest create accepted here has waited longer than UNSENT_LAG_SECONDS to be sent
to Novita, a new create's answer waits for that to pass (at most ROOM_WAIT_SECONDS, then it is accepted
anyway, never refused). A burst beyond what this process can send then slows its clients, instead of
queueing minutes of accepted creates behind it (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

from novita_gpu.kit.clock import Clock

UNSENT_LAG_SECONDS = 2.0
ROOM_WAIT_SECONDS = 10.0
# Creates accepted here within this long of each other are claimed together, at once (not at the next tick).
_BATCH_SECONDS = 0.02

# Claims and starts the creates of these ids in order, waiting for slots until a deadline (monotonic);
# returns how many of them it reached.
SendCreates = Callable[[list[str], float], Awaitable[int]]


class NewCreates:
    def __init__(
        self,
        clock: Clock,
        in_flight: Mapping[str, object],
        send: SendCreates,
        stopping: Callable[[], bool],
        *,
        patience: float,
    ) -> None:
        """`in_flight`: the rows being worked on (a tick may have started a create accepted here);
        `patience`: how long each round of sending waits for slots."""
        self.clock = clock
        self.in_flight = in_flight
        self.send = send
        self.stopping = stopping
        self.patience = patience
        self.unsent: dict[str, float] = {}  # creates accepted here, not started yet: since when (monotonic)
        self._room = asyncio.Event()  # set (and replaced) whenever some of them were started
        self._task: asyncio.Task[None] | None = None

    def add(self, instance_id: str) -> None:
        """A create was accepted here: send it as soon as a slot is free."""
        self.unsent[instance_id] = self.clock.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send_unsent(), name="reconciler-new-creates")

    async def _send_unsent(self) -> None:
        await asyncio.sleep(_BATCH_SECONDS)  # creates arriving together share one claim
        while self.unsent and not self.stopping():
            for instance_id in [i for i in self.unsent if i in self.in_flight]:
                del self.unsent[instance_id]  # a tick started it meanwhile
            ids = list(self.unsent)
            # Nobody waits for these rows: each one's lease is given back once it is done.
            reached = await self.send(ids, self.clock.monotonic() + self.patience)
            for instance_id in ids[:reached]:
                self.unsent.pop(instance_id, None)
            if reached:
                self._room.set()
                self._room = asyncio.Event()

    def lag(self) -> float:
        """How long the oldest create accepted here has waited to be sent to Novita (0 when none waits)."""
        oldest = next(iter(self.unsent.values()), None)
        return 0.0 if oldest is None else max(0.0, self.clock.monotonic() - oldest)

    async def room(self) -> None:
        """Return once a new create may be accepted: at once, unless the creates accepted here wait longer
        than UNSENT_LAG_SECONDS to be sent; then when they no longer do, or after ROOM_WAIT_SECONDS."""
        loop = asyncio.get_running_loop()
        until = loop.time() + ROOM_WAIT_SECONDS
        while self.lag() > UNSENT_LAG_SECONDS and (left := until - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._room.wait()

    async def aclose(self) -> None:
        """Stop sending (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
