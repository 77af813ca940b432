"""Retry-After comes as delay-seconds or an HTTP-date; anything else is ignored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from novita_gpu.webhooks.sender import parse_retry_after

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),
        ("Wed May  1 12:00:05 2024", 5.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: retry now
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("٣", None),  # a non-ASCII digit
    ],
)
def test_parse_retry_after(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds
