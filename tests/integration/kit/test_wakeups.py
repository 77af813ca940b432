"""Who wakes whom (services.py): each worker is woken by the news it acts on, never by every request.
A create at 200/s must wake the reconciler and the webhook dispatcher, not the prober or the sweeper."""

from __future__ import annotations

from tests.harness import Harness


def woken(harness: Harness) -> set[str]:
    workers = [
        harness.services.reconciler,
        harness.services.prober,
        harness.services.sweeper,
        harness.services.gpu_poller,
        harness.services.budgets,
        harness.services.dispatcher,
        harness.services.retention,
    ]
    names = {worker.name for worker in workers if worker._wake.is_set()}
    for worker in workers:
        worker._wake.clear()
    return names


async def test_a_create_wakes_the_reconciler_and_the_dispatcher_only(harness: Harness) -> None:
    woken(harness)
    await harness.create(name="woken")
    assert woken(harness) == {"reconciler", "webhooks"}


async def test_a_row_reaching_health_checking_wakes_the_prober(harness: Harness) -> None:
    created = await harness.create(name="probed")
    prober_woken = False
    for _ in range(1200):  # the reconciler alone, half a second of emulated time a tick
        woken(harness)
        await harness.services.reconciler.tick()
        prober_woken = prober_woken or "prober" in woken(harness)
        if (await harness.instance(created["instanceId"]))["status"] == "health_checking":
            break
        harness.clock.advance(0.5)
    assert (await harness.instance(created["instanceId"]))["status"] == "health_checking"
    assert prober_woken


async def test_an_idle_verdict_wakes_the_sweeper_only(harness: Harness) -> None:
    woken(harness)
    harness.services.gpu_poller.idle_found.emit("inst_0123456789abcdef0123")
    assert woken(harness) == {"autostop"}
