"""Retry timing: exponential backoff with full jitter, Retry-After parsing, and a time budget.

The budget counts the time spent in attempts plus the waits asked of `sleep`, so it behaves the same
with a real sleep and with the no-op sleep tests inject.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None when absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**(n-1)))."""

    base: float = 0.5
    cap: float = 8.0
    rng: random.Random = field(default_factory=random.Random)

    def wait(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))


@dataclass
class RetryBudget:
    """Attempts and seconds left for one logical call."""

    max_attempts: int
    deadline: float
    attempts: int = 0
    spent: float = 0.0

    def record_attempt(self, seconds: float) -> None:
        self.attempts += 1
        self.spent += seconds

    def next_wait(self, desired: float) -> float | None:
        """The wait before the next attempt (capped at what is left), or None when retrying must stop."""
        remaining = self.deadline - self.spent
        if self.attempts >= self.max_attempts or remaining <= 0:
            return None
        wait = min(max(0.0, desired), remaining)
        self.spent += wait
        return wait
