"""Request bodies of the instances API (validated strictly: wrong types are 400, never coerced)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
MAX_PRICE_PER_HOUR = 100_000  # USD per hour for the whole instance

Name = Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EnvVarIn(_Body):
    key: Annotated[StrictStr, Field(min_length=1, max_length=511, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]
    value: Annotated[StrictStr, Field(max_length=4095)]


class HealthCheckIn(_Body):
    path: Annotated[StrictStr, Field(min_length=1, max_length=512, pattern=r"^/[^\s]*$")] = "/"


class CreateInstanceIn(_Body):
    name: Name
    product_name: Annotated[StrictStr, Field(alias="productName", min_length=1, max_length=120)]
    template_id: Annotated[str, Field(alias="templateId")]
    gpu_num: Annotated[StrictInt, Field(alias="gpuNum", ge=1, le=8)] = 1
    rootfs_size: Annotated[StrictInt | None, Field(alias="rootfsSize", ge=10, le=6144)] = None
    region: Annotated[StrictStr | None, Field(max_length=120)] = None
    strict_region: Annotated[StrictBool, Field(alias="strictRegion")] = False
    billing_mode: Annotated[Literal["onDemand", "spot"] | None, Field(alias="billingMode")] = None
    # A finite ceiling: 1e999 parsed as infinity and was accepted (issue 17); no GPU offer costs this much.
    max_price_per_hour: Annotated[
        StrictFloat | StrictInt | None, Field(alias="maxPricePerHour", gt=0, le=MAX_PRICE_PER_HOUR)
    ] = None
    webhook_url: Annotated[StrictStr | None, Field(alias="webhookUrl", max_length=2048)] = None
    auto_stop_minutes: Annotated[StrictInt | None, Field(alias="autoStopMinutes", ge=0, le=43200)] = None
    envs: Annotated[list[EnvVarIn], Field(max_length=100)] = []
    labels: Annotated[dict[StrictStr, StrictStr], Field(max_length=50)] = {}
    health_check: Annotated[HealthCheckIn | None, Field(alias="healthCheck")] = None

    @field_validator("template_id", mode="before")
    @classmethod
    def _template_id(cls, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("templateId must be a template id (string or number) or a template name")
        text = str(value).strip()
        if not text or len(text) > 255:
            raise ValueError("templateId must be a template id or name (1-255 characters)")
        return text

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not 1 <= len(key) <= 63 or len(val) > 255:
                raise ValueError("label keys are 1-63 characters and values at most 255")
        return value


class InstanceNameIn(_Body):
    instance_name: Annotated[Name, Field(alias="instanceName")]


class StartIn(_Body):
    instance_name: Annotated[Name | None, Field(alias="instanceName")] = None
    webhook_url: Annotated[StrictStr | None, Field(alias="webhookUrl", max_length=2048)] = None
    health_check: Annotated[HealthCheckIn | None, Field(alias="healthCheck")] = None


class LastUsedIn(_Body):
    """Optional body of PUT /last-used: nothing is required."""


class SyncIn(_Body):
    dry_run: Annotated[StrictBool, Field(alias="dryRun")] = False
