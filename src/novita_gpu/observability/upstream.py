"""Upstream reachability judged from the calls we already make (no extra call per /health request)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import structlog

from novita_gpu.kit.clock import Clock
from novita_gpu.novita import REQUEST_PATIENCE_SECONDS, NovitaClient, NovitaError, answer_within
from novita_gpu.novita.errors import unreachable_message

log = structlog.get_logger(__name__)

_FAULTS = frozenset({"server_error", "network_error", "timeout"})


@dataclass
class _Call:
    at: float
    outcome: str


class UpstreamHealth:
    """Keeps the outcomes of recent Novita calls; `status()` says up / degraded / down / unknown."""

    def __init__(self, clock: Clock, window_seconds: float = 120.0, size: int = 200) -> None:
        self._clock = clock
        self._window = window_seconds
        self._calls: deque[_Call] = deque(maxlen=size)
        self.last_ok_at: float | None = None

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        now = self._clock.monotonic()
        self._calls.append(_Call(now, outcome))
        if outcome in ("ok", "client_error"):
            self.last_ok_at = now

    def status(self) -> dict[str, object]:
        now = self._clock.monotonic()
        recent = [c for c in self._calls if now - c.at <= self._window]
        if not recent:
            return {"status": "unknown", "recentCalls": 0, "detail": "no calls in the last two minutes"}
        faults = sum(c.outcome in _FAULTS for c in recent)
        limited = sum(c.outcome == "rate_limited" for c in recent)
        last = recent[-1].outcome
        if last in _FAULTS and faults >= 3 and (self.last_ok_at is None or now - self.last_ok_at > 30):
            state = "down"
        elif faults or limited:
            state = "degraded"
        else:
            state = "up"
        return {"status": state, "recentCalls": len(recent), "recentFaults": faults, "recentRateLimited": limited}


async def announce_reachability(client: NovitaClient) -> None:
    """One log line at start-up saying whether Novita answers, naming its URL (never the key): an
    unreachable Novita or a refused key is found out now, not at a user's first create."""
    try:
        with answer_within(REQUEST_PATIENCE_SECONDS):
            await client.list_clusters()
    except NovitaError as exc:
        log.error(
            "novita_unreachable",
            message=f"{unreachable_message(client.host, exc)} Instances can be neither created nor watched "
            f"until it answers (NOVITA_API_BASE_URL={client.base_url}).",
            url=client.base_url,
        )
        return
    log.info("novita_reachable", message=f"Novita answers at {client.base_url}", url=client.base_url)
