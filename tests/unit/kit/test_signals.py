"""Signals: the one way a part with news wakes a worker (services.py subscribes the worker's `wake`)."""

from __future__ import annotations

from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.kit.clock import SystemClock
from novita_gpu.kit.signals import Signal
from tests.unit.kit.test_workers import Counting


def test_every_listener_hears_what_the_signal_was_about_in_the_order_it_subscribed() -> None:
    heard: list[tuple[str, str]] = []
    signal: Signal[str] = Signal()
    signal.subscribe(lambda about: heard.append(("first", about)))
    signal.subscribe(lambda about: heard.append(("second", about)))
    signal.emit("inst_1")
    assert heard == [("first", "inst_1"), ("second", "inst_1")]


def test_a_signal_without_listeners_does_nothing() -> None:
    Signal[str]().emit("inst_1")


async def test_a_worker_subscribes_its_wake_to_any_signal() -> None:
    worker = Counting(pause=3600, clock=SystemClock())
    idle_found: Signal[str] = Signal()
    idle_found.subscribe(worker.wake)
    changes = ChangeFeed()  # the change feed is a signal too
    changes.subscribe(worker.wake)
    assert not worker._wake.is_set()
    idle_found.emit("inst_1")
    assert worker._wake.is_set()
    worker._wake.clear()
    changes.pulse(None)
    assert worker._wake.is_set()
