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

from novita_gpu.sdk.calls import Call
from novita_gpu.sdk.results import retry_after_seconds

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 0.2
    max_delay: float = 5.0

    def after_response(self, call: Call, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending `call` again after this answer; None to keep the answer."""
        if not self._may_retry(call, attempt) or response.status_code not in RETRY_STATUSES:
            return None
        if response.status_code in call.accept:
            return None
        return self._delay(attempt, retry_after_seconds(response))

    def after_error(self, call: Call, exc: httpx.TransportError, attempt: int) -> float | None:
        """Seconds to wait before sending `call` again after a transport failure; None to give up."""
        if not self._may_retry(call, attempt) or not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return None
        return self._delay(attempt, None)

    def _may_retry(self, call: Call, attempt: int) -> bool:
        return call.retryable and attempt < self.attempts

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = self.backoff * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.0)
        return min(max(backoff, retry_after or 0.0), self.max_delay)
