"""Injectable faults for the Novita API paths, sampled from a seeded random source.

Faults never touch `/_emulator/` or the instances' own ports.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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

    def sample(self) -> RequestFaults:
        with self._lock:
            cfg = self._config
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

    def _hit(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
