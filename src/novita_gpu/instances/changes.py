"""Change notification: every committed write in this process pulses the feed with the instance it
touched, and long-polls, the event stream, the webhook dispatcher and the read cache (read_cache.py)
hear it at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

Listener = Callable[[str | None], None]


class ChangeFeed:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def pulse(self, instance_id: str | None = None) -> None:
        """A write committed (to `instance_id`, or to anything when None)."""
        for listener in self._listeners:
            listener(instance_id)
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
