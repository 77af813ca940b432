"""Injectable faults for the Novita API paths, sampled from a seeded random source.

Faults never touch `/_emulator/` or the instances' own ports. The rate-based ones (latency, drops, 429,
5xx) hit every API path unless `paths` names some; `failures` script the next answers of one endpoint.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_REASONS = {429: "RATE_LIMIT_EXCEEDED", 500: "UNKNOWN", 503: "SERVICE_UNAVAILABLE"}


class PathFailure(BaseModel):
    """The next `count` authenticated requests to one endpoint fail with `status`.

    `before`: answered at once, the endpoint does nothing. `after`: the endpoint acts, then its success is
    replaced by the error (a write that happened although the caller saw it fail: what a client must
    resolve by reading back). A request the endpoint itself refuses does not use one up in `after` mode.
    """

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="below the API prefix, e.g. /networkstorage/create")
    method: str | None = Field(default=None, description="GET, POST, ...; None: any")
    status: int = Field(default=500, ge=400, le=599)
    reason: str = ""  # default: by status (429 RATE_LIMIT_EXCEEDED, 503 SERVICE_UNAVAILABLE, else UNKNOWN)
    message: str = ""
    count: int = Field(default=1, ge=1)
    mode: Literal["before", "after"] = "before"

    def matches(self, method: str, path: str) -> bool:
        return self.path == path and (self.method is None or self.method.upper() == method.upper())

    def same_script(self, other: PathFailure) -> bool:
        """The same scripted failure, whatever is left of its count."""
        return self.model_dump(exclude={"count"}) == other.model_dump(exclude={"count"})

    @property
    def answer_reason(self) -> str:
        return self.reason or DEFAULT_REASONS.get(self.status, "UNKNOWN")

    @property
    def answer_message(self) -> str:
        return self.message or "injected failure"


class FaultConfig(BaseModel):
    """All faults default to off. Rates are fractions of API requests (0..1)."""

    model_config = ConfigDict(extra="forbid")

    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after_seconds: float = Field(default=1.0, ge=0)
    server_error_rate: float = Field(default=0.0, ge=0, le=1)
    latency_ms: float = Field(default=0.0, ge=0)
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    create_failures: int = Field(default=0, ge=0)
    create_failure_mode: Literal["before", "after"] = "before"
    # Novita completes each create this many (emulated) seconds after receiving it, whether or not the
    # caller still waits for the answer: the slow create that makes a careless client create twice.
    create_delay_seconds: float = Field(default=0.0, ge=0)
    stuck_in_pulling: bool = False
    spot_reclaim_per_hour: float = Field(default=0.0, ge=0)
    # The next N migrates are accepted, but their `instanceMigrate` job ends `fail` and the instance exited.
    migrate_job_fails: int = Field(default=0, ge=0)
    # API paths (below the prefix) the rate-based faults above are limited to; empty: every path.
    paths: list[str] = Field(default_factory=list)
    failures: list[PathFailure] = Field(default_factory=list)


FaultKind = Literal["drop", "rate_limit", "server_error", "unavailable"]


@dataclass(frozen=True)
class RequestFaults:
    """What to do to one API request: wait `latency_seconds`, then fail with `kind` (None: serve it)."""

    latency_seconds: float
    kind: FaultKind | None


class FaultInjector:
    """Holds the current FaultConfig (changed at run time by the control API) and samples it."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self._lock = threading.Lock()
        self._config = config.model_copy()
        self._rng = random.Random(seed)

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config.model_copy()

    def update(self, changes: dict[str, object]) -> FaultConfig:
        """Apply a partial update; raises pydantic.ValidationError on bad fields or values."""
        with self._lock:
            merged = {**self._config.model_dump(), **changes}
            self._config = FaultConfig.model_validate(merged)
            return self._config.model_copy()

    def sample(self, path: str | None = None) -> RequestFaults:
        """The random faults of one request to `path` (none outside `paths` when that is set)."""
        with self._lock:
            cfg = self._config
            if cfg.paths and path not in cfg.paths:
                return RequestFaults(latency_seconds=0.0, kind=None)
            kind: FaultKind | None = None
            if self._hit(cfg.drop_rate):
                kind = "drop"
            elif self._hit(cfg.rate_limit_rate):
                kind = "rate_limit"
            elif self._hit(cfg.server_error_rate):
                kind = "server_error" if self._rng.random() < 0.5 else "unavailable"
            return RequestFaults(latency_seconds=cfg.latency_ms / 1000, kind=kind)

    def take_create_failure(self, mode: Literal["before", "after"]) -> bool:
        """Consume one pending create failure if one is due at this point (`mode`) of a create."""
        with self._lock:
            if self._config.create_failures <= 0 or self._config.create_failure_mode != mode:
                return False
            self._config = self._config.model_copy(update={"create_failures": self._config.create_failures - 1})
            return True

    def take_migrate_failure(self) -> bool:
        """Consume one pending migrate job failure, if any."""
        with self._lock:
            if self._config.migrate_job_fails <= 0:
                return False
            self._config = self._config.model_copy(update={"migrate_job_fails": self._config.migrate_job_fails - 1})
            return True

    def failure_for(self, method: str, path: str) -> PathFailure | None:
        """The scripted failure due for this request, if any (not used up: see `consume`)."""
        with self._lock:
            return next((f for f in self._config.failures if f.matches(method, path)), None)

    def consume(self, failure: PathFailure) -> bool:
        """Use up one of `failure`'s count; False when another request took the last one meanwhile."""
        with self._lock:
            failures = list(self._config.failures)
            for i, current in enumerate(failures):
                if current.same_script(failure):
                    if current.count > 1:
                        failures[i] = current.model_copy(update={"count": current.count - 1})
                    else:
                        del failures[i]
                    self._config = self._config.model_copy(update={"failures": failures})
                    return True
            return False

    def _hit(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
