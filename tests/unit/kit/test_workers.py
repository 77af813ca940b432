"""The one loop every background job runs: step, pause, wake-up, a failing step, a graceful stop."""

from __future__ import annotations

import asyncio

from novita_gpu.kit.clock import ManualClock, SystemClock
from novita_gpu.kit.workers import PeriodicWorker, stop_workers


class Counting(PeriodicWorker):
    name = "counting"
    retry_seconds = 0.01

    def __init__(self, pause: float, *, fail_first: int = 0, finish_takes: float = 0.0, clock: object = None) -> None:
        super().__init__(clock or SystemClock())  # type: ignore[arg-type]
        self.pause = pause
        self.fail_first = fail_first
        self.finish_takes = finish_takes
        self.steps = 0
        self.finished = 0

    @property
    def allowed_gap(self) -> float:
        return 1.0

    async def step(self) -> float:
        self.steps += 1
        if self.steps <= self.fail_first:
            raise RuntimeError("a bad step")
        return self.pause

    async def finish(self) -> None:
        await asyncio.sleep(self.finish_takes)
        self.finished += 1


async def until(condition: object, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_wake_up_cuts_the_pause_short() -> None:
    worker = Counting(pause=3600)
    task = asyncio.create_task(worker.run())
    await until(lambda: worker.steps == 1)
    worker.wake()
    await until(lambda: worker.steps == 2)
    await stop_workers([worker], [task], grace=1.0)
    assert worker.finished == 1 and task.done()


async def test_a_failing_step_is_logged_and_retried_without_ending_the_worker() -> None:
    worker = Counting(pause=3600, fail_first=2)
    task = asyncio.create_task(worker.run())
    await until(lambda: worker.steps == 3)  # two failures, each retried after retry_seconds
    assert not task.done()
    await stop_workers([worker], [task], grace=1.0)


async def test_stop_lets_the_step_end_then_finishes_once_and_a_slow_finish_is_cut_at_the_grace() -> None:
    quick, slow = Counting(pause=3600), Counting(pause=3600, finish_takes=3600)
    tasks = [asyncio.create_task(quick.run()), asyncio.create_task(slow.run())]
    await until(lambda: quick.steps == 1 and slow.steps == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stop_workers([quick, slow], tasks, grace=0.2)
    assert loop.time() - started < 2.0
    assert quick.finished == 1 and slow.finished == 0  # cancelled in its finish, after the grace
    assert all(task.done() for task in tasks)


async def test_a_pause_on_the_clock_lasts_until_the_clock_moves() -> None:
    clock = ManualClock()
    worker = Counting(pause=60, clock=clock)
    worker.pauses_on_clock = True
    task = asyncio.create_task(worker.run())
    await until(lambda: worker.steps == 1)
    await asyncio.sleep(0.05)
    assert worker.steps == 1  # real time passing does not end a pause of emulated time
    clock.advance(60)
    await until(lambda: worker.steps == 2)
    await stop_workers([worker], [task], grace=1.0)


async def test_a_worker_cancelled_while_it_wakes_up_ends() -> None:
    """A cancel that lands at any point of a wake-up (including while the pause's own tasks are being
    reaped) ends the worker: it is never swallowed, leaving a loop nobody can stop."""
    for yields in range(8):
        worker = Counting(pause=60)
        task = asyncio.create_task(worker.run())
        await until(lambda w=worker: w.steps == 1)
        for _ in range(3):
            await asyncio.sleep(0)  # the worker is now pausing
        worker.wake()
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, f"still running after a cancel {yields} loop turns into a wake-up"
        assert worker.finished == 1
