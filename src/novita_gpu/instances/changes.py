"""Change notification: every committed write in this process pulses the feed with the instance it
touched, and long-polls, the event stream, the webhook dispatcher and the read cache (read_cache.py)
hear it at once. The feed is a `Signal` (signals.py): listeners subscribe to it like to any other."""

from __future__ import annotations

import asyncio
import contextlib

from novita_gpu.kit.signals import Signal


class ChangeFeed(Signal[str | None]):
    def __init__(self) -> None:
        super().__init__()
        self._event = asyncio.Event()

    def pulse(self, instance_id: str | None = None) -> None:
        """A write committed (to `instance_id`, or to anything when None)."""
        self.emit(instance_id)
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
