"""Jittered backoff bounds and the retry budget of Novita calls (Retry-After: tests/unit/kit/test_retry_timing.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from novita_gpu.novita.retry import Backoff, RetryBudget

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    backoff = Backoff(base=0.5, cap=4.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = [backoff.wait(attempt) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # jitter spreads over the whole range


def test_budget_caps_waits_at_the_deadline_and_counts_attempts() -> None:
    budget = RetryBudget(max_attempts=10, deadline=10.0)
    budget.record_attempt(1.0)
    assert budget.next_wait(4.0) == 4.0
    budget.record_attempt(1.0)
    assert budget.next_wait(100.0) == pytest.approx(4.0)
    budget.record_attempt(0.5)
    assert budget.next_wait(1.0) is None


def test_budget_stops_at_max_attempts() -> None:
    budget = RetryBudget(max_attempts=2, deadline=100.0)
    budget.record_attempt(0.0)
    assert budget.next_wait(1.0) == 1.0
    budget.record_attempt(0.0)
    assert budget.next_wait(1.0) is None
