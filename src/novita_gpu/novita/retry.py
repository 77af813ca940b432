"""Retry timing of Novita calls: backoff (see retry_timing.py for the rules) and a time budget.

The budget counts the time spent in attempts plus the waits asked of `sleep`, so it behaves the same
with a real sleep and with the no-op sleep tests inject.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from novita_gpu.kit.retry_timing import full_jitter, parse_retry_after

__all__ = ["Backoff", "RetryBudget", "parse_retry_after"]


@dataclass
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**(n-1)))."""

    base: float = 0.5
    cap: float = 8.0
    rng: random.Random = field(default_factory=random.Random)

    def wait(self, attempt: int) -> float:
        return full_jitter(attempt, base=self.base, cap=self.cap, rng=self.rng)


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
