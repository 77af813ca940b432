"""The instances API's request bodies and the shapes of its answers.

Request bodies are validated strictly: wrong types are 400, never coerced.

The OpenAPI document is generated from these models, so each constraint the server applies is stated
here as a JSON Schema keyword (lengths, patterns, enums, bounds, required fields): a request the
document allows is one the server accepts, save for what depends on state (an unknown product,
template or region, a webhook target the SSRF guard refuses). Patterns avoid `\\s` and `.`, whose
meaning differs between regex dialects, and exclude NUL, which no body may hold (web/json_body.py).

Answers are rendered by `rendering.py` and the service, not through the answer models (that would
validate every hot read again); a test holds each answer model's fields equal to what the API really
sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)

from novita_gpu.instances.lifecycle import Status
from novita_gpu.kit.schemas import NO_NUL, Answer, Body, whole
from novita_gpu.volumes.schemas import InstanceVolumeAnswer, VolumeMountIn
from novita_gpu_client.vocabulary import NAME_PATTERN

MAX_PRICE_PER_HOUR = 100_000  # USD per hour for the whole instance
MAX_TEMPLATE_NUMBER = 2**53 - 1  # exact as a float too: validators that compare floats agree at the bound
# A template id or name, surrounding ASCII whitespace ignored, 1-255 characters left.
_WHITESPACE = " \t\n\r\f\v"  # what the server strips; the pattern's class names the same six
_SPACE = r" \t\n\r\f\v"
TEMPLATE_PATTERN = rf"^[{_SPACE}]*[^{_SPACE}\x00](?:[^\x00]{{0,253}}[^{_SPACE}\x00])?[{_SPACE}]*$"
# What the SSRF guard reads as an http(s) URL with a host (it may still refuse the target).
# A warm pool's name (pools/): an instance name's characters, short enough for `<pool>-<8 hex>` members.
POOL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
WEBHOOK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f\\/?#][^\x00-\x20\x7f\\]*$"


def _number(value: Any) -> Any:
    """Integers are numbers; booleans are not (a float field in strict mode takes neither)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# Bounds go before the validator, inside: after it pydantic states them as "ge"/"le", no JSON Schema words.
GpuNum = Annotated[StrictInt, Field(ge=1, le=8), BeforeValidator(whole)]
RootfsSize = Annotated[StrictInt, Field(ge=10, le=6144), BeforeValidator(whole)]
AutoStopMinutes = Annotated[StrictInt, Field(ge=0, le=43200), BeforeValidator(whole)]
MaxRuntimeMinutes = Annotated[StrictInt, Field(ge=0, le=525600), BeforeValidator(whole)]
Percent = Annotated[float, Field(strict=True, gt=0, le=100), BeforeValidator(_number)]
# A finite ceiling: 1e999 parsed as infinity and was accepted; no GPU offer costs this much.
PricePerHour = Annotated[float, Field(strict=True, gt=0, le=MAX_PRICE_PER_HOUR), BeforeValidator(_number)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]
# The pattern is stated, not enforced here: the SSRF guard refuses everything it excludes (and more), with
# its reasons and the code INVALID_WEBHOOK_URL that clients already see for every refused URL.
WebhookUrlText = Annotated[StrictStr, Field(max_length=2048, json_schema_extra={"pattern": WEBHOOK_URL_PATTERN})]
WebhookUrl = Annotated[
    WebhookUrlText | None,
    Field(
        alias="webhookUrl",
        description="http(s) receiver of this instance's events; 400 INVALID_WEBHOOK_URL when the SSRF guard "
        "refuses its target (private, loopback or link-local addresses, local-only names, credentials in the URL).",
    ),
]
LabelKey = Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=NO_NUL)]
LabelValue = Annotated[StrictStr, Field(max_length=255, pattern=NO_NUL)]
# Written out: pydantic would state the key pattern as patternProperties, which does not refuse a key.
_LABELS_SCHEMA = {
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {"minLength": 1, "maxLength": 63, "pattern": NO_NUL},
    "additionalProperties": {"type": "string", "maxLength": 255, "pattern": NO_NUL},
    "default": {},
}


class EnvVarIn(Body):
    key: Annotated[StrictStr, Field(min_length=1, max_length=511, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]
    value: Annotated[StrictStr, Field(max_length=4095, pattern=NO_NUL)]


# No NUL and no Unicode White_Space, listed: `\\s` means another set in each regex dialect (U+0085 is
# whitespace to the server's engine, not to ECMAScript's), and the document must mean one thing.
PROBE_PATH_PATTERN = r"^/[^\x00\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"


class HealthCheckIn(Body):
    path: Annotated[StrictStr, Field(min_length=1, max_length=512, pattern=PROBE_PATH_PATTERN)] = "/"


class NetworkStorageIn(Body):
    """A Novita network storage to mount; it must be in the cluster the instance lands in (pass its
    `region` with `strictRegion: true`), or Novita refuses the create."""

    id: Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=NO_NUL)]
    mount_point: Annotated[
        StrictStr, Field(alias="mountPoint", min_length=1, max_length=4095, pattern=r"^/[^\x00]*$")
    ] = "/network"


class AutoStopIn(Body):
    """An instance's auto-stop policy (docs/autostop.md). A field left out (or null) takes the server's
    default at create (AUTO_STOP_* settings) and keeps its current value in a PATCH."""

    idle_minutes: Annotated[
        AutoStopMinutes | None,
        Field(alias="idleMinutes", description="The idle window; 0 = never. Wins over autoStopMinutes."),
    ] = None
    signal: Annotated[
        Literal["lastUsed", "gpu", "both"] | None,
        Field(
            description="lastUsed: no PUT /last-used for the window. gpu: average GPU utilization below "
            "gpuIdleBelowPercent for the whole window. both: no ping AND idle GPUs."
        ),
    ] = None
    gpu_idle_below_percent: Annotated[Percent | None, Field(alias="gpuIdleBelowPercent")] = None
    action: Annotated[
        Literal["stop", "delete"] | None,
        Field(description="What ends an idle instance (and one past maxRuntimeMinutes)."),
    ] = None


class RecoveryIn(Body):
    """What a reclaim of a spot instance leads to (docs/spot.md). A field left out takes the server's
    default at create (SPOT_* settings) and keeps its current value in a PATCH."""

    on_reclaim: Annotated[
        Literal["migrate", "recreate", "stop"] | None,
        Field(
            alias="onReclaim",
            description="migrate: Novita moves it to another node (recreate if that fails); recreate: a new "
            "instance from the same spec; stop: it stays stopped.",
        ),
    ] = None
    max_recoveries: Annotated[
        StrictInt | None,
        Field(alias="maxRecoveries", ge=0, le=100, description="Recoveries allowed per rolling 24 h."),
        BeforeValidator(whole),
    ] = None
    fallback_to_on_demand: Annotated[
        StrictBool | None,
        Field(alias="fallbackToOnDemand", description="With no spot capacity anywhere, recreate on-demand."),
    ] = None
    keep_reclaimed: Annotated[
        StrictBool | None,
        Field(alias="keepReclaimed", description="Keep the reclaimed instance (its disk) after recovering."),
    ] = None

    def changes(self) -> dict[str, Any]:
        """The fields set, as stored (camelCase)."""
        return {
            "onReclaim": self.on_reclaim,
            "maxRecoveries": self.max_recoveries,
            "fallbackToOnDemand": self.fallback_to_on_demand,
            "keepReclaimed": self.keep_reclaimed,
        }


def template_ref(value: Any) -> str:
    """A templateId as given: a template id (string or number) or a template's exact name, stripped."""
    value = whole(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("templateId must be a template id (string or number) or a template name")
    if isinstance(value, int) and not 0 <= value <= MAX_TEMPLATE_NUMBER:
        raise ValueError(f"a numeric templateId is from 0 to {MAX_TEMPLATE_NUMBER}")
    text = str(value).strip(_WHITESPACE)
    if not text or len(text) > 255:
        raise ValueError("templateId must be a template id or name (1-255 characters)")
    return text


TemplateRef = Annotated[
    str,
    Field(alias="templateId"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": TEMPLATE_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": MAX_TEMPLATE_NUMBER},
            ],
            "description": "A template id (string or number) or a template's exact name.",
        }
    ),
]


class CreateInstanceIn(Body):
    name: Name
    product_name: Annotated[StrictStr, Field(alias="productName", min_length=1, max_length=120, pattern=NO_NUL)]
    template_id: TemplateRef
    gpu_num: Annotated[GpuNum, Field(alias="gpuNum")] = 1
    rootfs_size: Annotated[RootfsSize | None, Field(alias="rootfsSize")] = None
    region: Annotated[StrictStr | None, Field(max_length=120, pattern=NO_NUL)] = None
    strict_region: Annotated[StrictBool, Field(alias="strictRegion")] = False
    billing_mode: Annotated[Literal["onDemand", "spot"] | None, Field(alias="billingMode")] = None
    max_price_per_hour: Annotated[PricePerHour | None, Field(alias="maxPricePerHour")] = None
    webhook_url: WebhookUrl = None
    auto_stop_minutes: Annotated[
        AutoStopMinutes | None, Field(alias="autoStopMinutes", description="The idle window of signal lastUsed.")
    ] = None
    auto_stop: Annotated[AutoStopIn | None, Field(alias="autoStop")] = None
    max_runtime_minutes: Annotated[
        MaxRuntimeMinutes | None,
        Field(alias="maxRuntimeMinutes", description="A hard limit from ready, whatever the activity; 0 = none."),
    ] = None
    envs: Annotated[list[EnvVarIn], Field(max_length=100)] = []
    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=50), WithJsonSchema(_LABELS_SCHEMA)] = {}
    health_check: Annotated[HealthCheckIn | None, Field(alias="healthCheck")] = None
    image_auth_id: Annotated[
        StrictStr | None,
        Field(
            alias="imageAuthId",
            min_length=1,
            max_length=255,
            pattern=NO_NUL,
            description="A Novita registry auth id for a private image (instead of the template's own).",
        ),
    ] = None
    network_storages: Annotated[list[NetworkStorageIn], Field(alias="networkStorages", max_length=30)] = []
    recovery: RecoveryIn | None = None
    volumes: Annotated[
        list[VolumeMountIn],
        Field(
            max_length=30,
            description="Volumes to mount, by name or id; the instance is placed in their region only.",
        ),
    ] = []
    pool: Annotated[
        StrictStr | None,
        Field(
            min_length=1,
            max_length=40,
            pattern=POOL_REF_PATTERN,
            description="Claim from this warm pool (docs/pools.md): its productName and templateId must be the "
            "pool's, and the spec fields the pool sets (gpuNum, region, volumes, envs, ...) left out.",
        ),
    ] = None

    _template_id = field_validator("template_id", mode="before")(template_ref)


class UpdateInstanceIn(Body):
    """Body of PATCH /api/instances/{id}: the auto-stop policy and runtime limit (each field optional)."""

    auto_stop: Annotated[AutoStopIn | None, Field(alias="autoStop")] = None
    auto_stop_minutes: Annotated[
        AutoStopMinutes | None, Field(alias="autoStopMinutes", description="As autoStop.idleMinutes (which wins).")
    ] = None
    max_runtime_minutes: Annotated[MaxRuntimeMinutes | None, Field(alias="maxRuntimeMinutes")] = None
    recovery: RecoveryIn | None = None


class InstanceNameIn(Body):
    instance_name: Annotated[Name, Field(alias="instanceName")]


class StartIn(Body):
    """Optional body of POST /api/instances/{id}/start."""

    webhook_url: WebhookUrl = None
    health_check: Annotated[HealthCheckIn | None, Field(alias="healthCheck")] = None


class StopIn(Body):
    """Optional body of POST /api/instances/{id}/stop."""

    return_to_pool: Annotated[
        StrictBool,
        Field(
            alias="returnToPool",
            description="A claimed pool instance goes back to its pool as a stopped member if the pool wants more "
            "idle members, else it is deleted (docs/pools.md). Ignored for other instances.",
        ),
    ] = False


class StopByNameIn(StopIn):
    instance_name: Annotated[Name, Field(alias="instanceName")]


class StartByNameIn(StartIn):
    instance_name: Annotated[Name, Field(alias="instanceName")]


class LastUsedIn(Body):
    """Optional body of PUT /last-used: nothing is required."""


class SyncIn(Body):
    dry_run: Annotated[StrictBool, Field(alias="dryRun")] = False


# -- answers: the shapes of what the API sends, for the OpenAPI document --------------------

StatusName = Literal[
    "creating",
    "recovering",
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


class RecoveryStepAnswer(Answer):
    attempt: int
    at: datetime
    path: Literal["migrate", "recreate"]
    upstream_id: str | None = Field(description="The Novita instance this step ran on (null: none made yet).")
    outcome: Literal["in_progress", "recovered", "failed", "abandoned"]
    message: str | None


class RecoveryAnswer(Answer):
    """The spot recovery policy, the recovery under way (or the last) and every step (docs/spot.md)."""

    on_reclaim: Literal["migrate", "recreate", "stop"]
    max_recoveries: int
    fallback_to_on_demand: bool
    keep_reclaimed: bool
    in_progress: bool
    attempt: int = Field(description="Recoveries so far (the current one while inProgress).")
    path: Literal["migrate", "recreate"] | None
    started_at: datetime | None
    on_demand: bool = Field(description="The replacement was created on-demand (no spot capacity left).")
    kept_instance_ids: list[str] = Field(description="Reclaimed Novita instances kept (keepReclaimed).")
    history: list[RecoveryStepAnswer]


class NetworkStorageAnswer(Answer):
    id: str
    mount_point: str


class InstancePoolAnswer(Answer):
    pool_id: str
    name: str | None
    state: Literal["ready", "stopped", "claimed"] = Field(
        description="ready or stopped: an idle member the pool keeps so; claimed: handed out (returnable)."
    )


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
    volumes: list[InstanceVolumeAnswer] = Field(description="The volumes it mounts: id, name and mount point.")
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
    recovery: RecoveryAnswer
    pool: InstancePoolAnswer | None = Field(description="The warm pool it belongs to (docs/pools.md); null: none.")
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
    event: str = Field(
        description="Its webhook and stream name: instance.<to>, or instance.reclaim_notice, "
        "instance.reclaimed (a change that says more, or none)."
    )
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
    """What a sync did to the caller's own instances (never another key's)."""

    claimed: int = Field(description="The caller's instances the pass looked at.")
    changed: int = Field(description="The caller's instances whose record the pass changed.")
    ready: int = Field(description="The caller's instances that passed their health check.")
    busy: bool = Field(description="Some instance of the caller's is still changing: sync again for more.")
