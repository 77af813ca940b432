"""The retry rules every caller shares: one Retry-After reading, one backoff formula."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from novita_gpu.kit.retry_timing import full_jitter, parse_retry_after

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("2.5", 2.5),  # a fraction: read, although RFC 9110 asks for an integer
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),
        ("Wed May  1 12:00:05 2024", 5.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: retry now
        ("-3", None),
        ("-5", None),
        ("+5", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("٣", None),  # a non-ASCII digit
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_full_jitter_spreads_under_an_exponential_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = [full_jitter(attempt, base=0.5, cap=4.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # spread over the whole range


def test_every_caller_uses_the_same_rules() -> None:
    from novita_gpu.novita import retry as novita_retry
    from novita_gpu.sdk import results as sdk_answers
    from novita_gpu.webhooks import sender

    assert novita_retry.parse_retry_after is parse_retry_after
    assert sender.parse_retry_after is parse_retry_after
    assert sdk_answers.parse_retry_after is parse_retry_after
