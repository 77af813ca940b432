"""The shapes of the auto-stop endpoints' answers, for the OpenAPI document (a test holds them true)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from novita_gpu.kit.schemas import Answer


class CandidateAnswer(Answer):
    instance_id: str
    name: str
    status: str
    action: Literal["stop", "delete"]
    idle_minutes: int
    last_used_at: datetime | None
    idle_since: datetime | None
    stops_at: datetime
    reason: Literal["AUTO_STOP", "MAX_RUNTIME"] | None = Field(description="Once decided (trigger, sweep).")
    signal: Literal["lastUsed", "gpu", "both", "maxRuntime"] | None = Field(description="The rule that decided.")


class SavedAnswer(Answer):
    stopped: int
    gpu_hours_saved: float
    dollars_saved: float


class BySignalAnswer(Answer):
    last_used: SavedAnswer
    gpu: SavedAnswer
    both: SavedAnswer
    max_runtime: SavedAnswer


class AutoStopStatsAnswer(Answer):
    enabled: bool
    check_interval_seconds: float
    default_idle_minutes: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    watched: int = Field(description="Your instances with an idle clock or a runtime limit running.")
    gpu_watched: int = Field(description="Of those, the ones whose GPU utilization is polled.")
    eligible_now: int
    next_deadline: CandidateAnswer | None
    stopped_so_far: int
    gpu_hours_saved: float = Field(description="Since each auto-stop, estimated from prices.")
    dollars_saved: float
    by_signal: BySignalAnswer = Field(description="The same, by the rule that decided each stop.")


class TriggerAnswer(Answer):
    dry_run: bool
    checked_at: datetime
    would_stop: list[CandidateAnswer] | None = Field(default=None, description="With dryRun.")
    stopped: list[CandidateAnswer] | None = Field(default=None, description="Without dryRun.")
