"""The pools API's request bodies and the shapes of its answers (validated strictly, as instances')."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)

from novita_gpu.instances.schemas import (
    _LABELS_SCHEMA,
    POOL_REF_PATTERN,
    AutoStopIn,
    AutoStopMinutes,
    CreateInstanceIn,
    GpuNum,
    HealthCheckIn,
    InstanceAnswer,
    LabelKey,
    LabelValue,
    MaxRuntimeMinutes,
    Name,
    RecoveryIn,
    RootfsSize,
    TemplateRef,
    WebhookUrl,
    template_ref,
)
from novita_gpu.kit.schemas import NO_NUL, Answer, Body, whole
from novita_gpu.volumes.schemas import VolumeMountIn

MAX_POOL_MEMBERS = 100
# A pool's name: an instance name's pattern, short enough that `<pool>-<8 hex>` is one too (its members').
POOL_NAME_PATTERN = POOL_REF_PATTERN
PoolName = Annotated[StrictStr, Field(min_length=1, max_length=40, pattern=POOL_NAME_PATTERN)]
Members = Annotated[StrictInt, Field(ge=0, le=MAX_POOL_MEMBERS), BeforeValidator(whole)]
MaxMembers = Annotated[StrictInt, Field(ge=1, le=MAX_POOL_MEMBERS), BeforeValidator(whole)]


class PoolIn(Body):
    """Body of POST /api/pools: the members' spec, and how many idle members to keep (docs/pools.md)."""

    name: Annotated[PoolName, Field(description="Unique among your pools; members are named <pool>-<8 hex>.")]
    product_name: Annotated[StrictStr, Field(alias="productName", min_length=1, max_length=120, pattern=NO_NUL)]
    template_id: TemplateRef
    gpu_num: Annotated[GpuNum, Field(alias="gpuNum")] = 1
    region: Annotated[StrictStr | None, Field(max_length=120, pattern=NO_NUL)] = None
    billing_mode: Annotated[Literal["onDemand", "spot"] | None, Field(alias="billingMode")] = None
    rootfs_size: Annotated[RootfsSize | None, Field(alias="rootfsSize")] = None
    volumes: Annotated[list[VolumeMountIn], Field(max_length=30)] = []
    health_check: Annotated[HealthCheckIn | None, Field(alias="healthCheck")] = None
    min_ready: Annotated[
        Members, Field(alias="minReady", description="Idle members kept running and ready (billed as GPUs).")
    ] = 0
    min_stopped: Annotated[
        Members,
        Field(alias="minStopped", description="Idle members kept created, booted once and stopped (their disk)."),
    ] = 0
    max: Annotated[
        MaxMembers,
        Field(description="Members at most, claimed ones included; it wins over minReady + minStopped."),
    ]
    idle_minutes: Annotated[
        AutoStopMinutes,
        Field(
            alias="idleMinutes",
            description="With no claim for this long, ready members are stopped (kept as stopped members) "
            "until the next claim; 0 = never.",
        ),
    ] = 0
    return_on_auto_stop: Annotated[
        StrictBool,
        Field(alias="returnOnAutoStop", description="A claimed instance's auto-stop returns it to the pool."),
    ] = False
    prewarm: Annotated[
        StrictBool, Field(description="Ask Novita to prewarm the template's image in the pool's clusters.")
    ] = False

    _template_id = field_validator("template_id", mode="before")(template_ref)


class PoolUpdateIn(Body):
    """Body of PATCH /api/pools/{name}: the targets and policies (each field optional; the spec is fixed)."""

    min_ready: Annotated[Members | None, Field(alias="minReady")] = None
    min_stopped: Annotated[Members | None, Field(alias="minStopped")] = None
    max: MaxMembers | None = None
    idle_minutes: Annotated[AutoStopMinutes | None, Field(alias="idleMinutes")] = None
    return_on_auto_stop: Annotated[StrictBool | None, Field(alias="returnOnAutoStop")] = None
    prewarm: StrictBool | None = None


class ClaimIn(Body):
    """Body of POST /api/pools/{name}/claim: what makes the member your instance (as a create says it)."""

    name: Name
    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=50), WithJsonSchema(_LABELS_SCHEMA)] = {}
    webhook_url: WebhookUrl = None
    auto_stop_minutes: Annotated[AutoStopMinutes | None, Field(alias="autoStopMinutes")] = None
    auto_stop: Annotated[AutoStopIn | None, Field(alias="autoStop")] = None
    max_runtime_minutes: Annotated[MaxRuntimeMinutes | None, Field(alias="maxRuntimeMinutes")] = None
    recovery: RecoveryIn | None = None

    @classmethod
    def of_create(cls, body: CreateInstanceIn) -> ClaimIn:
        """The claim a POST /api/instances with `pool` makes."""
        return cls(
            name=body.name,
            labels=body.labels,
            webhook_url=body.webhook_url,
            auto_stop_minutes=body.auto_stop_minutes,
            auto_stop=body.auto_stop,
            max_runtime_minutes=body.max_runtime_minutes,
            recovery=body.recovery,
        )


# -- answers -------------------------------------------------------------------------------------


class PoolMembersAnswer(Answer):
    ready: int = Field(description="Idle, running and ready: a claim gets one at once.")
    stopped: int = Field(description="Idle, booted once and stopped: a claim starts one.")
    warming: int = Field(description="Idle, on the way to ready or stopped.")
    claimed: int = Field(description="Handed out and not yet returned or deleted.")
    total: int = Field(description="Members counted against max.")


class PoolClaimsAnswer(Answer):
    last_hour: int
    last_day: int
    hit_rate: dict[str, float] = Field(
        description="Share of the last day's claims served from ready, stopped, warming members and cold."
    )


class PoolIdleCostAnswer(Answer):
    usd_per_hour: float = Field(description="What the idle members cost per hour now: ready GPUs plus stopped disks.")
    ready_usd_per_hour: float
    stopped_usd_per_hour: float
    month_usd: float = Field(description="What idle members cost this calendar month (UTC).")


class PoolAnswer(Answer):
    pool_id: str
    name: str
    team: str
    status: Literal["active", "draining"]
    product_name: str
    template_id: str
    gpu_num: int
    region: str | None
    billing_mode: str
    rootfs_size: int | None
    volumes: list[dict[str, Any]]
    health_check: dict[str, Any] | None
    min_ready: int
    min_stopped: int
    max: int
    idle_minutes: int
    return_on_auto_stop: bool
    prewarm: dict[str, Any] = Field(description="{enabled, tasks: [{clusterId, taskId, state}]}")
    dormant: bool = Field(description="No claim for idleMinutes: ready members are kept stopped until one comes.")
    members: PoolMembersAnswer
    claims: PoolClaimsAnswer
    idle_cost: PoolIdleCostAnswer
    refill_blocked: dict[str, Any] | None = Field(description="Why the pool cannot refill now (a quota, a budget).")
    last_claim_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PoolsAnswer(Answer):
    pools: list[PoolAnswer]


class ClaimSourceAnswer(Answer):
    pool: str
    source: Literal["ready", "stopped", "warming", "cold"] = Field(
        description="ready: handed out ready at once; stopped: a stopped member started; warming: a member on "
        "its way up; cold: created from the pool's spec."
    )


class ClaimAnswer(InstanceAnswer):
    """The claimed instance's view (as GET /api/instances/{id}) and how the claim was served."""

    message: str
    claim: ClaimSourceAnswer
