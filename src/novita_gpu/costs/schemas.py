"""The shapes of the costs and budget endpoints' answers, for the OpenAPI document (a test holds them true)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from novita_gpu.kit.schemas import Answer


class CostGroupAnswer(Answer):
    key: str | None = Field(description="The product name, the API key's id, or the label's value (null: unset).")
    cost_usd: float
    billed_hours: float
    gpu_hours: float
    instances: int


class CostLineAnswer(Answer):
    instance_id: str
    name: str
    api_key: str = Field(description="The id of the API key that owns it (key-..., never the key itself).")
    product_name: str
    billing_mode: str
    gpu_num: int
    price_per_hour: float = Field(description="USD for the whole instance, the price it was created at.")
    labels: dict[str, str]
    group: str | None
    billed_hours: float = Field(description="Hours Novita billed it within the period.")
    cost_usd: float
    billing_now: bool


class CostsAnswer(Answer):
    from_: datetime = Field(alias="from")
    to: datetime
    as_of: datetime = Field(description="Stretches still billing count up to this moment.")
    group_by: str
    currency: Literal["USD"]
    total_usd: float
    billed_hours: float
    gpu_hours: float
    groups: list[CostGroupAnswer]
    instances: list[CostLineAnswer]


class BudgetAnswer(Answer):
    api_key: str
    monthly_limit_usd: float | None = Field(description="null: no budget.")
    on_exceeded: Literal["refuseCreates", "stopAll"] | None
    webhook_url: str | None
    set_by: Literal["self", "admin"] | None = Field(description="admin: only an admin key may change it.")
    month: str = Field(description="The calendar month (UTC) spend is counted in, e.g. 2026-11.")
    spent_usd: float
    rate_per_hour_usd: float = Field(description="What the key's instances billing now cost per hour.")
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
