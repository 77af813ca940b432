"""The shapes of the costs and budget endpoints' answers, for the OpenAPI document (a test holds them true)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from novita_gpu.kit.schemas import Answer


class CostGroupAnswer(Answer):
    key: str | None = Field(
        description="The product name (network-storage for volumes), the API key's id, or the label's value "
        "(null: unset; volumes have no labels)."
    )
    cost_usd: float = Field(description="Its instances' and volumes' cost.")
    billed_hours: float = Field(description="Its instances' billed hours.")
    gpu_hours: float
    instances: int
    volume_hours: float = Field(description="Its volumes' billed hours.")
    volumes: int


class CostLineAnswer(Answer):
    kind: Literal["instance", "volume"]
    instance_id: str = Field(description="The instance's id; for a volume row, the volume's id (as volumeId).")
    name: str
    api_key: str = Field(description="The id of the API key that owns it (key-..., never the key itself).")
    product_name: str = Field(description="The instance's product; network-storage for a volume.")
    billing_mode: str
    gpu_num: int = Field(description="0 for a volume.")
    price_per_hour: float = Field(
        description="USD for the whole instance, the price it was created at; for a volume, USD for the whole "
        "volume at its current size."
    )
    labels: dict[str, str]
    group: str | None
    billed_hours: float = Field(description="Hours Novita billed it within the period.")
    billed_seconds: float = Field(description="The same in seconds.")
    cost_usd: float
    billing_now: bool
    cost_by_billing_mode: dict[str, float] = Field(
        description="costUsd by the billing mode of each stretch: a spot instance recovered on-demand has both."
    )
    recoveries: int | None = Field(
        default=None, description="Instance rows only: spot recoveries so far (each replacement at its own price)."
    )
    disk_usd: float | None = Field(
        default=None,
        description="Instance rows only: the part of costUsd that is the instance's kept disk while it waited "
        "stopped in a warm pool (STOPPED_DISK_USD_PER_GB_MONTH); not in billedHours.",
    )
    volume_id: str | None = Field(default=None, description="Volume rows only.")
    region: str | None = Field(default=None, description="Volume rows only: the volume's region (cluster).")
    size_gb: int | None = Field(default=None, description="Volume rows only: its size, after its last resize.")


class PoolIdleCostAnswer(Answer):
    pool_id: str
    pool: str | None = Field(description="The pool's name (null: a pool no longer in the store).")
    idle_usd: float = Field(description="What its idle members cost in the period: GPU time and kept disks.")
    idle_gpu_usd: float
    idle_disk_usd: float
    idle_usd_per_hour: float = Field(description="What its idle members cost per hour now.")


class CostsAnswer(Answer):
    from_: datetime = Field(alias="from")
    to: datetime
    as_of: datetime = Field(description="Stretches still billing count up to this moment.")
    group_by: str
    currency: Literal["USD"]
    total_usd: float = Field(description="Instances and volumes.")
    instances_usd: float
    volumes_usd: float
    billed_hours: float = Field(description="Instances' billed hours.")
    gpu_hours: float
    volume_hours: float = Field(description="Volumes' billed hours.")
    groups: list[CostGroupAnswer]
    recoveries: int = Field(description="Spot recoveries of the instances in the report.")
    pools: list[PoolIdleCostAnswer] = Field(
        description="Per warm pool: what its idle members (ready GPUs, stopped disks) cost; already in the totals."
    )
    instances: list[CostLineAnswer] = Field(description="One row per instance and per volume (kind).")


class BudgetAnswer(Answer):
    api_key: str
    monthly_limit_usd: float | None = Field(description="null: no budget.")
    on_exceeded: Literal["refuseCreates", "stopAll"] | None
    webhook_url: str | None
    set_by: Literal["self", "admin"] | None = Field(description="admin: only an admin key may change it.")
    month: str = Field(description="The calendar month (UTC) spend is counted in, e.g. 2026-11.")
    spent_usd: float = Field(description="This month, instances and volumes.")
    rate_per_hour_usd: float = Field(description="What the key's instances and volumes billing now cost per hour.")
    projected_usd: float = Field(description="Spend so far plus the current rate until the month ends.")
    remaining_usd: float | None
    exceeded: bool
    exceeded_at: datetime | None
    updated_at: datetime | None


class AccountDeliveryAnswer(Answer):
    delivery_id: str
    url: str
    status: Literal["pending", "delivered", "gone", "expired"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


class AccountEventAnswer(Answer):
    id: int
    event: str
    at: datetime
    payload: dict[str, Any] = Field(description="The webhook body: {event, apiKey, timestamp, data}.")
    webhooks: list[AccountDeliveryAnswer]


class AccountEventsAnswer(Answer):
    api_key: str
    events: list[AccountEventAnswer]
