"""Novita's jobs (`GET /jobs`) as the emulator makes them, one `instanceMigrate` job per migrate, and the
run-time spot settings (the reclaim notice, whether a migrated instance keeps its id).

A job's state is not stored: like an instance's status it follows from the instance's timeline and the
clock. The job is `running` while the instance it moves is `migrating`; then `success` if the instance
went on to `running`, else `fail` (the fault `migrate_job_fails`, or a delete meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from novita_gpu.emulator.instance import EmulatedInstance, Phase

JOB, SPOT_SETTINGS = "job", "spot_settings"  # state file kinds
INSTANCE_MIGRATE = "instanceMigrate"
# The reference's enums for the list's filters (`state`, `type`).
JOB_STATES = ("pulling", "running", "fail", "success", "break")
JOB_TYPES = ("saveImage", INSTANCE_MIGRATE, "autoInstanceMigrate")
MIGRATE_FAILED = "MIGRATE_FAILED"  # a failed job's `state.error` [INF: Novita's value is undocumented]


class SpotSettings(BaseModel):
    """`GET/PUT /_emulator/spot`: camelCase on the wire, as the rest of the control API."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    notice_seconds: float = Field(default=30.0, ge=0)  # emulated seconds, divided by the speed
    migrate_new_id: bool = False
    # Spot GPUs each cluster sells (by cluster id), besides its capacity for the product: a cluster absent
    # here sells spot up to its capacity, as on-demand. `{"<cluster>": 0}`: sold out for spot only.
    capacity: dict[str, int] = Field(default_factory=dict)

    @field_validator("capacity")
    @classmethod
    def _not_negative(cls, value: dict[str, int]) -> dict[str, int]:
        if any(gpus < 0 for gpus in value.values()):
            raise ValueError("spot capacity is a number of GPUs, 0 or more")
        return value


@dataclass
class Job:
    """One job. `target_id` is the instance that carries the migration (the same id, or the new one),
    `instance_id` the id the migrate was asked for, which the job shows [INF]."""

    id: str
    type: str
    user: str
    instance_id: str
    target_id: str
    created_at: float
    fail_message: str = ""  # why it fails when the fault made it fail

    def outcome(self, target: EmulatedInstance | None, now: float) -> tuple[str, Phase | None]:
        """(`running` | `success` | `fail`, the phase that ended it)."""
        if target is None:
            return "fail", None
        started = False
        for phase in target.history_at(now):
            if phase.status == "migrating" and phase.at == self.created_at:
                started = True
            elif started and phase.status != "migrating":
                return ("success" if phase.status == "running" else "fail"), phase
        return ("running" if started else "fail"), None

    def json(self, target: EmulatedInstance | None, now: float) -> dict[str, Any]:
        state, ended = self.outcome(target, now)
        error, message = "", ""
        if state == "fail":
            error = MIGRATE_FAILED
            message = self.fail_message or "the instance was deleted while it was being migrated"
        return {
            "Id": self.id,
            "user": self.user,
            "type": self.type,
            "envs": [],
            "state": {"state": state, "error": error, "errorMessage": message},
            "logAddress": "",
            "createdAt": str(int(self.created_at)),
            "updateAt": str(int(ended.at if ended is not None else self.created_at)),
            "instanceId": self.instance_id,
        }


@dataclass(frozen=True)
class JobQuery:
    page_size: int
    page_num: int
    job_id: str = ""
    state: str = ""
    type: str = ""
    start_time: int = 0  # unix seconds; 0: no bound
    end_time: int = 0
    creators: frozenset[str] = frozenset()

    def matches(self, job: Job, state: str) -> bool:
        return (
            (not self.job_id or job.id == self.job_id)
            and (not self.state or state == self.state)
            and (not self.type or job.type == self.type)
            and (not self.start_time or job.created_at >= self.start_time)
            and (not self.end_time or job.created_at <= self.end_time)
            and (not self.creators or job.user in self.creators)
        )
