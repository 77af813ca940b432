"""The reconciler at scale: creates sent at once, rows leased only when a slot is free, full passes over
many steady rows in one tick, and rows never judged by a listing older than their last write."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from novita_gpu.instances.listing import Listing
from novita_gpu.instances.reconciler import attention, new_creates
from novita_gpu.instances.reconciler.attention import needs_attention
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import Listed
from tests.harness import SEED_BODY, Harness


async def test_a_create_accepted_goes_out_at_once_without_waiting_for_a_tick(harness: Harness) -> None:
    created = await harness.create()
    harness.services.reconciler.created(created["instanceId"])  # what the service does when workers run
    deadline = time.monotonic() + 5
    while (await harness.instance(created["instanceId"]))["novitaInstanceId"] is None:
        assert time.monotonic() < deadline, "the create did not go out"
        await asyncio.sleep(0.02)
    stats = harness.stats()
    assert stats.get("POST /gpu/instance/create") == 1
    assert "GET /gpu/instances" not in stats  # no tick, no listing: a create needs none


async def _leases(harness: Harness) -> dict[str, str | None]:
    async with harness.services.db.read() as session:
        return dict((await session.execute(select(Instance.id, Instance.lease_owner))).tuples().all())


async def _ready_instances(harness: Harness, count: int) -> list[str]:
    ids = [(await harness.create())["instanceId"] for _ in range(count)]
    for instance_id in ids:
        await harness.until_status(instance_id, "ready")
    return ids


async def test_rows_beyond_the_free_slots_stay_unleased_for_another_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await Harness(tmp_path, novita_timeout_seconds=2.0).start()
    try:
        monkeypatch.setattr(harness.services.reconciler.runner, "slots", 2)
        harness.faults(create_delay_seconds=60)  # every create hangs until the client gives up (2 s)
        ids = [(await harness.create())["instanceId"] for _ in range(4)]
        reconciler = harness.services.reconciler
        for instance_id in ids:
            reconciler.created(instance_id)
        deadline = time.monotonic() + 5  # the two creates reach Novita, where they hang (for 2 s each)
        while harness.stats().get("POST /gpu/instance/create", 0) < 2:
            assert time.monotonic() < deadline, "the creates did not go out"
            await asyncio.sleep(0.01)
        leases = await _leases(harness)
        assert sorted(leases[i] is None for i in ids) == [False, False, True, True]
        assert reconciler.busy_rows() == {i for i in ids if leases[i] is not None}
        assert harness.stats().get("POST /gpu/instance/create") == 2
    finally:
        await harness.stop()


async def test_a_full_pass_over_more_steady_rows_than_slots_ends_in_one_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await Harness(tmp_path).start()
    try:
        await _ready_instances(harness, 5)
        monkeypatch.setattr(harness.services.reconciler.runner, "slots", 2)
        result = await harness.services.reconciler.tick(full=True)
        assert (result.claimed, result.changed, result.busy) == (5, 0, False)
        assert set((await _leases(harness)).values()) == {None}
    finally:
        await harness.stop()


def test_a_row_written_after_the_listing_began_is_judged_by_the_next_one() -> None:
    began = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    listing = Listing(taken_at=began)
    listing.add(Listed("n-1", "a-1", "pulling", "", False))  # what Novita said when the page was read
    row = SimpleNamespace(
        pending_action=None,
        novita_instance_id="n-1",
        status="health_checking",
        phase_deadline_at=None,
        upstream_status="running",  # read by id after the listing began: newer than the listing
        updated_at=began + timedelta(milliseconds=300),
    )
    assert not needs_attention(row, listing, began + timedelta(seconds=1))  # type: ignore[arg-type]
    row.updated_at = began - timedelta(seconds=1)
    assert needs_attention(row, listing, began + timedelta(seconds=1))  # type: ignore[arg-type]


async def test_a_full_pass_looks_at_a_few_hundred_rows_a_tick_until_it_has_seen_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await Harness(tmp_path).start()
    try:
        ids = await _ready_instances(harness, 5)
        monkeypatch.setattr(attention, "SWEEP_PER_TICK", 2)
        reconciler = harness.services.reconciler
        claimed = [(await reconciler.tick(full=True)).claimed]
        claimed += [(await reconciler.tick(full=False)).claimed for _ in range(3)]
        assert claimed == [2, 2, 1, 0]
        harness.novita_action("stop", (await harness.instance(ids[0]))["novitaInstanceId"])
        result = await reconciler.tick(full=True)  # a new pass; a change shows at once, besides the pass
        assert result.claimed == 3 and (await harness.instance(ids[0]))["status"] in ("stopping", "stopped")
    finally:
        await harness.stop()


async def test_a_create_waits_while_earlier_ones_wait_to_be_sent_and_goes_on_once_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backpressure: a burst beyond what the process can send slows its clients instead of queueing
    minutes of accepted creates; a create is never refused for it, only answered later."""
    harness = await Harness(tmp_path, novita_timeout_seconds=2.0).start()
    try:
        instances, reconciler = harness.services.instances, harness.services.reconciler
        monkeypatch.setattr(reconciler.runner, "slots", 1)
        instances.created.subscribe(reconciler.created)  # as build_services wires them with workers on
        instances.room_for_create = reconciler.room_for_create
        harness.faults(create_delay_seconds=60)  # each create hangs until the client gives up (2 s)
        await harness.create(name="first")  # sent at once, and hangs: it holds the one slot
        await harness.create(name="second")  # waits for the slot
        harness.clock.advance(new_creates.UNSENT_LAG_SECONDS + 1)
        assert reconciler.unsent_lag() > new_creates.UNSENT_LAG_SECONDS

        third = asyncio.create_task(harness.http.post("/api/instances", json={**SEED_BODY, "name": "third"}))
        done, _ = await asyncio.wait({third}, timeout=0.3)
        assert not done  # not accepted (nor stored) while the second waits to be sent
        assert (await harness.http.get("/api/instances")).json()["total"] == 2
        # The first create's call gives up (in doubt: never sent again), the second goes out: room.
        answer = await asyncio.wait_for(third, timeout=10)
        assert answer.status_code == 201

        # Never refused: past ROOM_WAIT_SECONDS a create is accepted however long the others wait.
        monkeypatch.setattr(new_creates, "ROOM_WAIT_SECONDS", 0.1)
        harness.clock.advance(new_creates.UNSENT_LAG_SECONDS + 1)
        late = await harness.http.post("/api/instances", json={**SEED_BODY, "name": "fourth"})
        assert late.status_code == 201
    finally:
        await harness.stop()
