"""When a call is sent again, and after how long.

Only calls marked retryable (idempotent ones, and creates, which always carry an Idempotency-Key) are
retried, and only when the server surely did not act or asks to be called again: the connection could
not be made, or the answer was 429/502/503/504. Backoff is exponential with jitter, raised to the
server's `Retry-After` and capped, so a retried call never waits long.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from novita_gpu_client.calls import Call
from novita_gpu_client.results import retry_after_seconds

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` in all, `backoff` doubling (with jitter) up to `max_delay`, or the server's Retry-After up
    to `max_delay`. `give_up_after`: the most seconds one call may take, its attempts and the waits between
    them included (what the server holds a long-poll on purpose is not counted); each attempt's timeout is
    cut to what is left, and a retry that could not finish in time (judged by how long the last attempt
    took) is not started, so the last answer or error is raised instead. None: only `attempts` limits."""

    attempts: int = 3
    backoff: float = 0.2
    max_delay: float = 5.0
    give_up_after: float | None = None

    def after_response(
        self, call: Call, response: httpx.Response, attempt: int, *, spent: float = 0.0, took: float = 0.0
    ) -> float | None:
        """Seconds to wait before sending `call` again after this answer; None to keep the answer. `spent`:
        seconds since the call's first attempt began; `took`: how long this attempt took."""
        if not self._may_retry(call, attempt) or response.status_code not in RETRY_STATUSES:
            return None
        if response.status_code in call.accept:
            return None
        return self._in_time(self._delay(attempt, retry_after_seconds(response)), spent, took)

    def after_error(
        self, call: Call, exc: httpx.TransportError, attempt: int, *, spent: float = 0.0, took: float = 0.0
    ) -> float | None:
        """Seconds to wait before sending `call` again after a transport failure; None to give up."""
        if not self._may_retry(call, attempt) or not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return None
        return self._in_time(self._delay(attempt, None), spent, took)

    def attempt_timeout(self, timeout: float, spent: float) -> float:
        """An attempt's timeout: `timeout`, cut to what is left of `give_up_after`."""
        if self.give_up_after is None:
            return timeout
        return max(0.05, min(timeout, self.give_up_after - spent))

    def _in_time(self, delay: float, spent: float, took: float) -> float | None:
        if self.give_up_after is not None and spent + delay + took > self.give_up_after:
            return None
        return delay

    def _may_retry(self, call: Call, attempt: int) -> bool:
        return call.retryable and attempt < self.attempts

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = self.backoff * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.0)
        return min(max(backoff, retry_after or 0.0), self.max_delay)
