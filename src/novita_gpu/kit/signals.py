"""The one way to tell a worker there is news: a `Signal`, named for what happened.

Whoever has news worth acting on at once owns a signal (`InstanceService.changed`, `InstanceService.created`,
`Reconciler.health_checking`, `GpuPoller.idle_found`; the change feed, instances/changes.py, is the signal of
every committed write), and `services.py` alone subscribes listeners to it, most often a worker's `wake`.
The emitter does not know who listens, and no worker takes another's `wake` in its constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Signal(Generic[T]):
    """Something that happened, with what it was about (usually an instance id), for whoever subscribed.

    Listeners run at once, in the emitter's call, so they must be cheap: set an event (`PeriodicWorker.wake`),
    note an id. A signal is emitted where the news is, which is often a hot path (every create)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[T], None]] = []

    def subscribe(self, listener: Callable[[T], None]) -> None:
        self._listeners.append(listener)

    def emit(self, about: T) -> None:
        for listener in self._listeners:
            listener(about)
