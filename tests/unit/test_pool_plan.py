"""The pool keeper's plan (pools/members.py) on made-up members: what it creates, starts, stops and deletes
to meet a pool's targets, and that it never plans past max."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from novita_gpu.instances.lifecycle import Goal, Status
from novita_gpu.kit.tables import Instance, Pool
from novita_gpu.pools.members import Census, claimable, plan

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
_ids = count()


def pool(min_ready: int = 0, min_stopped: int = 0, max_members: int = 10, idle_minutes: int = 0) -> Pool:
    return Pool(
        id="pool_1",
        name="gpus",
        min_ready=min_ready,
        min_stopped=min_stopped,
        max_members=max_members,
        idle_minutes=idle_minutes,
        created_at=NOW - timedelta(hours=1),
        updated_at=NOW - timedelta(hours=1),
        last_claim_at=None,
    )


def member(state: str, status: Status, goal: Goal = Goal.RUNNING, pending: str | None = None) -> Instance:
    return Instance(
        id=f"inst_{next(_ids)}",
        pool_state=state,
        status=status,
        desired_state=goal,
        pending_action=pending,
        novita_instance_id="n",
        created_at=NOW,
    )


READY = (Status.READY, Goal.RUNNING)
STOPPED = (Status.STOPPED, Goal.STOPPED)


def test_an_empty_pool_creates_its_targets_within_max() -> None:
    out = plan(pool(min_ready=2, min_stopped=3, max_members=4), Census.of([]), NOW)
    assert (out.create_ready, out.create_stopped) == (2, 2)


def test_a_booted_member_kept_stopped_is_stopped_and_ready_ones_are_left() -> None:
    booted = member("stopped", *READY)
    ready = member("ready", *READY)
    out = plan(pool(min_ready=1, min_stopped=1), Census.of([booted, ready]), NOW)
    assert out.park == [booted] and out.wake == [] and out.delete == []
    assert (out.create_ready, out.create_stopped) == (0, 0)


def test_ready_wanted_starts_a_stopped_member_before_creating() -> None:
    stopped = member("stopped", *STOPPED)
    out = plan(pool(min_ready=1, min_stopped=1), Census.of([stopped]), NOW)
    assert out.wake == [stopped]
    assert (out.create_ready, out.create_stopped) == (0, 1)


def test_a_ready_member_someone_stopped_counts_as_a_stopped_one() -> None:
    stopped_by_hand = member("ready", *STOPPED)
    out = plan(pool(min_ready=1), Census.of([stopped_by_hand]), NOW)
    assert out.wake == [stopped_by_hand] and out.create_ready == 0


def test_surplus_goes_to_stopped_while_wanted_then_is_deleted() -> None:
    ready = [member("ready", *READY) for _ in range(3)]
    out = plan(pool(min_ready=1, min_stopped=1), Census.of(ready), NOW)
    assert len(out.park) == 1 and len(out.delete) == 1


@pytest.mark.parametrize("status", [Status.FAILED, Status.STOPPED])
def test_broken_members_are_deleted_and_replaced(status: Status) -> None:
    broken = member("ready", status, Goal.RUNNING)
    out = plan(pool(min_ready=1, max_members=1), Census.of([broken]), NOW)
    assert out.delete == [broken] and out.create_ready == 1


def test_a_dormant_pool_keeps_its_ready_members_stopped() -> None:
    quiet = pool(min_ready=2, min_stopped=1, idle_minutes=30)
    ready = [member("ready", *READY) for _ in range(2)]
    out = plan(quiet, Census.of(ready), NOW)
    assert out.park == ready and out.delete == []
    assert out.create_stopped == 1


def test_claimed_members_count_against_max() -> None:
    claimed = [member("claimed", *READY) for _ in range(3)]
    out = plan(pool(min_ready=2, max_members=4), Census.of(claimed), NOW)
    assert out.create_ready == 1


def test_a_claim_takes_ready_then_stopped_then_warming() -> None:
    warming = member("ready", Status.STARTING)
    stopped = member("stopped", *STOPPED)
    ready = member("ready", *READY)
    assert [source for source, _ in claimable([warming, stopped, ready])] == ["ready", "stopped", "warming"]
    assert claimable([member("ready", Status.FAILED), member("claimed", *READY)]) == []
