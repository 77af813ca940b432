"""Spot recovery that a crash, an unanswered call or a second replica interrupts: it resumes exactly once.

A replica killed (kill -9) in the middle of a migrate or of a recreate's create leaves its lease and its
intent behind; whoever takes the row once the lease lapses settles the call by what Novita shows, and
the record ends ready with one Novita instance. The process-level kill -9 is in tests/e2e."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from novita_gpu.instances.reconciler import Reconciler
from novita_gpu.novita import CreateInstanceRequest, Migration, NovitaClient
from tests.harness import Harness, harness_on
from tests.integration.instances.test_spot_recovery import only_live, ready_spot, reclaim

_SHORT_CALLS = {"novita_timeout_seconds": 2.0, "novita_retry_deadline_seconds": 5.0, "lease_seconds": 10.0}


class _DiesMidCall:
    """A Novita client whose migrate or create reaches Novita (or not) and is never answered: the process
    that sent it was killed."""

    def __init__(self, client: NovitaClient, *, reaches_novita: bool) -> None:
        self._client = client
        self._reaches = reaches_novita

    async def migrate_instance(self, instance_id: str) -> Migration:
        if self._reaches:
            await self._client.migrate_instance(instance_id)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def create_instance(self, request: CreateInstanceRequest) -> str:
        if self._reaches:
            await self._client.create_instance(request)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _replica(harness: Harness) -> Reconciler:
    s = harness.services
    return Reconciler(s.db, s.clock, s.client, s.catalog, s.settings, s.instances.changes)


async def _killed(replica: Reconciler) -> None:
    """What a kill -9 leaves: nothing given back, its calls never answered."""
    replica.runner.stop()
    tasks = list(replica.runner.in_flight.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("reaches_novita", [True, False])
@pytest.mark.parametrize("path", ["migrate", "recreate"])
async def test_a_recovery_whose_sender_is_killed_mid_call_resumes_exactly_once(
    tmp_path: Path, path: str, reaches_novita: bool
) -> None:
    async with Harness(tmp_path, **_SHORT_CALLS) as harness:
        ready = await ready_spot(harness, recovery={"onReclaim": path})
        name = await harness.upstream_name(ready["instanceId"])
        creates_before = harness.stats().get("POST /gpu/instance/create", 0)
        reclaim(harness, ready["novitaInstanceId"])

        doomed = _replica(harness)
        dying = _DiesMidCall(harness.services.client, reaches_novita=reaches_novita)
        doomed.recovering.client = dying  # type: ignore[assignment]
        doomed.creating.client = dying  # type: ignore[assignment]

        for _ in range(240):  # only it runs: it sees the reclaim, then sends the migrate or the create
            await doomed.tick()
            if doomed.busy_rows():
                break
            harness.clock.advance(0.5)
        assert doomed.busy_rows(), "the doomed replica never sent its call"
        await _killed(doomed)

        back = await harness.until_status(ready["instanceId"], "ready", "failed", max_seconds=600)
        assert back["status"] == "ready", back
        assert back["recovery"]["inProgress"] is False
        assert [s["outcome"] for s in back["recovery"]["history"]] == ["recovered"]
        calls = harness.stats()
        if path == "migrate":
            assert calls.get("POST /gpu/instance/migrate") == 1  # never sent twice, never lost
            assert back["novitaInstanceId"] == ready["novitaInstanceId"]
        else:
            # Novita received one create: the one the killed replica sent (adopted by name), or the one sent
            # again once its look-up ended (it never arrived).
            assert calls.get("POST /gpu/instance/create", 0) - creates_before == 1, calls
        live = await only_live(harness, back, name)
        assert live["id"] == back["novitaInstanceId"]


async def test_a_migrate_answered_with_an_error_after_it_was_made_is_not_sent_again(harness: Harness) -> None:
    ready = await ready_spot(harness)
    harness.faults(failures=[{"path": "/gpu/instance/migrate", "status": 502, "mode": "after"}])
    reclaim(harness, ready["novitaInstanceId"])
    await harness.run_until(lambda: _settled(harness, ready["instanceId"]), max_seconds=600)
    back = await harness.instance(ready["instanceId"])
    assert back["status"] == "ready" and [s["path"] for s in back["recovery"]["history"]] == ["migrate"]
    assert harness.stats().get("POST /gpu/instance/migrate") == 1


async def _settled(harness: Harness, instance_id: str) -> bool:
    view = await harness.instance(instance_id)
    return view["status"] == "ready" and view["recovery"]["attempt"] == 1 and not view["recovery"]["inProgress"]


@pytest.mark.postgres
@pytest.mark.parametrize("path", ["migrate", "recreate"])
async def test_two_replicas_on_postgresql_recover_a_record_once(tmp_path: Path, path: str) -> None:
    async with harness_on("postgres", tmp_path) as harness:
        other = _replica(harness)
        records = [await ready_spot(harness, recovery={"onReclaim": path}) for _ in range(4)]
        creates_before = harness.stats().get("POST /gpu/instance/create", 0)
        for record in records:
            reclaim(harness, record["novitaInstanceId"])

        async def all_back() -> bool:
            await other.tick()
            return all([await _settled(harness, r["instanceId"]) for r in records])

        try:
            await harness.run_until(all_back, max_seconds=900)
        finally:
            await other.aclose()
        calls = harness.stats()
        if path == "migrate":
            assert calls.get("POST /gpu/instance/migrate") == len(records)
        else:
            assert calls.get("POST /gpu/instance/create", 0) - creates_before == len(records)
        for record in records:
            view = await harness.instance(record["instanceId"])
            assert len(view["recovery"]["history"]) == 1
            # The notice came through the listing the replicas share through the store.
            events = await harness.events(record["instanceId"])
            assert any("checkpoint" in (e["message"] or "") for e in events), events
            name = await harness.upstream_name(record["instanceId"])
            assert (await only_live(harness, view, name))["id"] == view["novitaInstanceId"]
