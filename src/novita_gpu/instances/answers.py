"""The shapes of the instances API's answers, for the OpenAPI document (/openapi.json, /docs).

Answers are rendered by `view.py` and the service, not through these models (that would validate every
hot read again); a test holds each model's fields equal to what the API really sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from novita_gpu.instances.lifecycle import Status
from novita_gpu.web.answers import Answer

StatusName = Literal[
    "creating",
    "starting",
    "running",
    "health_checking",
    "ready",
    "stopping",
    "stopped",
    "terminating",
    "terminated",
    "failed",
]
assert set(StatusName.__args__) == {s.value for s in Status}  # type: ignore[attr-defined]


class GpuCheckAnswer(Answer):
    state: Literal["pending", "busy", "idle", "unavailable"] = Field(
        description="The GPU poller's last verdict on the window; pending: not looked at yet."
    )
    checked_at: datetime | None
    next_check_at: datetime | None
    samples: int | None
    avg_percent: float | None
    max_percent: float | None
    busy_at: datetime | None = Field(description="The latest sample at or above the threshold.")
    samples_until: datetime | None = Field(description="The latest sample (Novita's data lags about a minute).")
    fallback: Literal["lastUsed"] | None = Field(description="lastUsed while Novita's metrics cannot be read.")
    reason: str | None = Field(description="Why the metrics could not be read (errors, no samples, gaps).")


class AutoStopAnswer(Answer):
    idle_minutes: int = Field(description="Idle limit; 0 = never.")
    signal: Literal["lastUsed", "gpu", "both"]
    gpu_idle_below_percent: float
    action: Literal["stop", "delete"] = Field(
        description="What ends it: the policy's action, or delete for a failed instance Novita is still booting."
    )
    last_used_at: datetime | None
    stops_at: datetime | None = Field(
        description="When it will be ended if nothing changes; null: never, or not known until the GPU poller "
        "looks (see gpu.nextCheckAt)."
    )
    max_runtime_ends_at: datetime | None
    gpu: GpuCheckAnswer | None = Field(description="Signal gpu or both only.")
    last_decision: dict[str, Any] | None = Field(
        description="The last auto-stop or max-runtime decision: {reason, signal, action, decidedAt, figures...}."
    )


class CostAnswer(Answer):
    accrued_usd: float = Field(description="What Novita has billed for it so far, as of accruedAt.")
    billed_seconds: float
    accrued_at: datetime | None = Field(description="Moved forward every minute while it bills.")
    billing_since: datetime | None = Field(description="Start of the stretch Novita bills now; null: not billing.")


class NetworkStorageAnswer(Answer):
    id: str
    mount_point: str


class InstanceAnswer(Answer):
    instance_id: str
    name: str
    status: StatusName
    status_reason: str | None = Field(description="Why it failed or stopped, e.g. HEALTH_CHECK_TIMEOUT, AUTO_STOP.")
    status_message: str | None
    upstream_status: str | None = Field(description="Novita's raw status (toCreate, pulling, exited, ...).")
    novita_instance_id: str | None
    product_name: str
    product_id: str | None
    template_id: str
    image_auth_id: str | None = Field(description="The Novita registry auth the image is pulled with.")
    network_storages: list[NetworkStorageAnswer] = Field(description="Novita network storages it mounts.")
    gpu_num: int
    rootfs_size: int
    region: str | None
    cluster_id: str | None
    billing_mode: str
    price_per_hour: float | None
    max_price_per_hour: float | None
    webhook_url: str | None
    connection_details: dict[str, Any] | None = Field(
        description="null until running: {ports: [{port, type, endpoint}], ssh?, jupyter?}."
    )
    health_check: dict[str, Any] | None = Field(
        description="The last port probe: {status, checkedAt, endpoints: [{port, endpoint, healthy, error}]}."
    )
    auto_stop: AutoStopAnswer
    max_runtime_minutes: int = Field(description="A hard limit from ready; 0 = none.")
    cost: CostAnswer
    env_keys: list[str] = Field(description="Names of the instance's environment variables (values never leave).")
    labels: dict[str, str]
    operation_id: str | None
    created_at: datetime
    started_at: datetime | None
    ready_at: datetime | None
    stopped_at: datetime | None
    failed_at: datetime | None
    terminated_at: datetime | None
    updated_at: datetime


class CreatedAnswer(InstanceAnswer):
    message: str


class InstancePageAnswer(Answer):
    instances: list[InstanceAnswer]
    total: int
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class ActionAnswer(Answer):
    instance_id: str
    name: str
    status: StatusName
    operation_id: str | None
    message: str


class TouchAnswer(Answer):
    instance_id: str
    last_used_at: datetime
    auto_stop: AutoStopAnswer


class AttemptAnswer(Answer):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookAnswer(Answer):
    delivery_id: str
    url: str
    status: Literal["pending", "delivered", "gone", "expired"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    history: list[AttemptAnswer]


class EventAnswer(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    id: int
    at: datetime
    from_: StatusName | None = Field(alias="from")
    to: StatusName
    reason: str | None
    message: str | None
    webhooks: list[WebhookAnswer]


class EventsAnswer(Answer):
    instance_id: str
    events: list[EventAnswer]


class SyncAnswer(Answer):
    claimed: int
    changed: int
    ready: int
    busy: bool
