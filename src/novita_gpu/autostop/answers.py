"""The shapes of the auto-stop endpoints' answers, for the OpenAPI document (a test holds them true)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from novita_gpu.web.answers import Answer


class CandidateAnswer(Answer):
    instance_id: str
    name: str
    status: str
    action: Literal["stop", "delete"]
    idle_minutes: int
    last_used_at: datetime | None
    idle_since: datetime | None
    stops_at: datetime


class AutoStopStatsAnswer(Answer):
    enabled: bool
    check_interval_seconds: float
    default_idle_minutes: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    watched: int = Field(description="Your instances with an idle clock running.")
    eligible_now: int
    next_deadline: CandidateAnswer | None
    stopped_so_far: int
    gpu_hours_saved: float = Field(description="Since each auto-stop, estimated from prices.")
    dollars_saved: float


class TriggerAnswer(Answer):
    dry_run: bool
    checked_at: datetime
    would_stop: list[CandidateAnswer] | None = Field(default=None, description="With dryRun.")
    stopped: list[CandidateAnswer] | None = Field(default=None, description="Without dryRun.")
