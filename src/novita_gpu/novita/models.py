"""Pydantic models of Novita's v1 payloads: camelCase in, snake_case attributes, tolerant of Novita's types.

Novita sends many numbers and timestamps as strings, `""` for unset strings, `"0"`/`"-1"` for unset
times and sometimes null or `{}` where a list is expected; the `Loose*` types absorb that. Values that
are really malformed (e.g. `"abc"` for a price) still fail validation. Secrets (env values, passwords,
inline image credentials) are excluded from reprs.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


def _blank_to(default: Any) -> BeforeValidator:
    def convert(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        return value

    return BeforeValidator(convert)


def _listish(value: Any) -> Any:
    return [] if value is None or value in ("", {}) else value


def _unix_time(value: Any) -> Any:
    """Unix seconds (number or string) or ISO text; `""`, `0` and `-1` mean "not set"."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "0", "-1") else value


LooseInt = Annotated[int, _blank_to(0)]
LooseStr = Annotated[str, _blank_to("")]
LooseBool = Annotated[bool, _blank_to(False)]
UnixTime = Annotated[datetime | None, BeforeValidator(_unix_time)]


def _object_or_none(value: Any) -> Any:
    return None if value in (None, "", {}) else value


class NovitaModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
        coerce_numbers_to_str=True,
    )


class EnvVar(NovitaModel):
    key: LooseStr
    value: LooseStr = Field(default="", repr=False)


class Cluster(NovitaModel):
    id: LooseStr
    name: LooseStr = ""
    available_gpu_types: Annotated[list[str], BeforeValidator(_listish)] = Field(
        default_factory=list, alias="availableGpuType"
    )
    support_network_storage: LooseBool = False
    support_instance_network: LooseBool = False


def _region_labels(value: Any) -> Any:
    """The regions as Novita names them (`"US-CA-06 (California)"`); non-string and blank entries are dropped."""
    items = _listish(value)
    if not isinstance(items, list):
        return items
    return [item for item in items if isinstance(item, str) and item.strip()]


def _region_codes(value: Any) -> Any:
    """`"US-CA-06 (California)"` -> `"US-CA-06"`; non-string entries are dropped."""
    labels = _region_labels(value)
    if not isinstance(labels, list):
        return labels
    return [label.split("(")[0].strip() for label in labels]


class MonthlyPrice(NovitaModel):
    price: LooseInt = 0
    month: LooseInt = 0


PRICE_UNITS_PER_USD = 100_000


class Product(NovitaModel):
    """A GPU product. Prices are integers in 1/100000 USD per GPU-hour."""

    id: LooseStr
    name: LooseStr = ""
    cpu_per_gpu: LooseInt = 0
    memory_per_gpu: LooseInt = 0
    disk_per_gpu: LooseInt = 0
    available_deploy: LooseBool = False
    min_root_fs: LooseInt = Field(default=0, alias="minRootFS")
    max_root_fs: LooseInt = Field(default=0, alias="maxRootFS")
    min_local_storage: LooseInt = 0
    max_local_storage: LooseInt = 0
    regions: Annotated[list[str], BeforeValidator(_region_codes)] = Field(default_factory=list)
    region_labels: Annotated[list[str], BeforeValidator(_region_labels)] = Field(
        default_factory=list, validation_alias="regions"
    )
    price: LooseInt = 0
    spot_price: LooseInt = 0
    monthly_price: Annotated[list[MonthlyPrice], BeforeValidator(_listish)] = Field(default_factory=list)
    billing_methods: Annotated[list[str], BeforeValidator(_listish)] = Field(default_factory=list)
    inventory_state: LooseStr = ""

    def price_per_gpu_hour_usd(self, billing_mode: str) -> float:
        """USD per GPU-hour for `onDemand`/`monthly` (and `""`, Novita's unset mode) or `spot`."""
        if billing_mode == "spot":
            return self.spot_price / PRICE_UNITS_PER_USD
        if billing_mode in ("onDemand", "monthly", ""):
            return self.price / PRICE_UNITS_PER_USD
        raise ValueError(f"unknown billing mode {billing_mode!r}")


class TemplatePort(NovitaModel):
    type: LooseStr = ""
    ports: Annotated[list[int], BeforeValidator(_listish)] = Field(default_factory=list)


class Template(NovitaModel):
    id: LooseStr = Field(default="", validation_alias=AliasChoices("Id", "id"))
    name: LooseStr = ""
    type: LooseStr = ""
    channel: LooseStr = ""
    image: LooseStr = ""
    image_auth: LooseStr = ""
    start_command: LooseStr = ""
    entrypoint: LooseStr = ""
    rootfs_size: LooseInt = 0
    ports: Annotated[list[TemplatePort], BeforeValidator(_listish)] = Field(default_factory=list)
    envs: Annotated[list[EnvVar], BeforeValidator(_listish)] = Field(default_factory=list)
    min_cuda_version: LooseStr = ""
    created_at: UnixTime = None


class TemplatePage(NovitaModel):
    templates: Annotated[list[Template], BeforeValidator(_listish)] = Field(
        default_factory=list, validation_alias=AliasChoices("template", "templates")
    )
    total: LooseInt = 0

    @property
    def items(self) -> list[Template]:
        """The page's templates, under the name every page gives them (`paging.walk_pages`)."""
        return self.templates


class RegistryAuth(NovitaModel):
    id: LooseStr
    name: LooseStr = ""
    username: LooseStr = ""
    password: LooseStr = Field(default="", repr=False)


class NetworkStorage(NovitaModel):
    """A network storage (cloud volume). `price` is in Novita's unit (1/100000 USD) per hour for the whole storage [INF: docs/costs.md]."""

    storage_id: LooseStr
    storage_name: LooseStr = ""
    storage_size: LooseInt = 0  # GB
    cluster_id: LooseStr = ""
    cluster_name: LooseStr = ""
    price: LooseInt = 0

    @property
    def id(self) -> str:
        return self.storage_id


class NetworkStoragePage(NovitaModel):
    storages: Annotated[list[NetworkStorage], BeforeValidator(_listish)] = Field(
        default_factory=list, validation_alias=AliasChoices("data", "storages")
    )
    total: LooseInt = 0

    @property
    def items(self) -> list[NetworkStorage]:
        """The page's storages, under the name every page gives them (`paging.walk_pages`)."""
        return self.storages


class NetworkStorageMount(NovitaModel):
    """One `networkStorages` item of a create: `Id` with a capital I, as Novita documents it."""

    id: str = Field(alias="Id")
    mount_point: str = "/network"


class VolumeMount(NovitaModel):
    """One of an instance's `volumeMounts`: `network` (with the storage `id`) or `local`. `size` comes as a
    string in lists and as a number in gets."""

    type: LooseStr = ""
    size: LooseInt = 0
    id: LooseStr = ""
    mount_path: LooseStr = ""


class InstanceNode(NovitaModel):
    max_rootfs_size: LooseInt = 0


def _one_node(value: Any) -> Any:
    """`node` is an array of one `{maxRootfsSize}` in Novita's reference and one object in its console and
    in typed clients: either is read as the object (an empty array or `{}` as none)."""
    if isinstance(value, list):
        value = value[0] if value else None
    return _object_or_none(value)


class PortMapping(NovitaModel):
    port: LooseInt
    type: LooseStr = ""
    endpoint: Annotated[str | None, _blank_to(None)] = None


def _empty_status_error(value: StatusError | None) -> StatusError | None:
    if value is not None and not value.state and not value.message:
        return None
    return value


class StatusError(NovitaModel):
    state: LooseStr = ""
    message: LooseStr = ""


# `statusError`: null, `{}` and an error with neither state nor message all read as no error.
OptionalStatusError = Annotated[
    StatusError | None, BeforeValidator(_object_or_none), AfterValidator(_empty_status_error)
]
# `spotReclaimTime`: unix seconds; unset ("", "0", "-1", null) reads as 0.
ReclaimTime = Annotated[int, BeforeValidator(lambda v: _unix_time(v) or 0)]


class SshComponent(NovitaModel):
    ssh_command: LooseStr = ""
    password: LooseStr = Field(default="", repr=False)
    is_running: LooseBool = False


class JupyterComponent(NovitaModel):
    port: LooseInt = 0
    address: LooseStr = ""
    is_running: LooseBool = False


class WebTerminalComponent(NovitaModel):
    address: LooseStr = ""
    username: LooseStr = ""
    password: LooseStr = Field(default="", repr=False)
    is_running: LooseBool = False


class LogComponent(NovitaModel):
    system_log_address: LooseStr = ""
    instance_log_address: LooseStr = ""
    is_running: LooseBool = False


class NovitaInstance(NovitaModel):
    """One GPU instance as returned by list (no port endpoints, no connect components) or get.

    Frozen: the client hands the same parsed instance to every listing that sees it unchanged."""

    model_config = ConfigDict(frozen=True)

    id: LooseStr = ""
    name: LooseStr = ""
    cluster_id: LooseStr = ""
    cluster_name: LooseStr = ""
    status: LooseStr = ""
    kind: LooseStr = ""
    product_id: LooseStr = ""
    product_name: LooseStr = ""
    gpu_num: LooseInt = 0
    cpu_num: LooseInt = 0
    memory: LooseInt = 0
    rootfs_size: LooseInt = 0
    image_url: LooseStr = ""
    image_auth_id: LooseStr = ""
    command: LooseStr = ""
    entrypoint: LooseStr = ""
    envs: Annotated[list[EnvVar], BeforeValidator(_listish)] = Field(default_factory=list, repr=False)
    billing_mode: LooseStr = ""
    port_mappings: Annotated[list[PortMapping], BeforeValidator(_listish)] = Field(default_factory=list)
    status_error: OptionalStatusError = None
    spot_status: LooseStr = ""
    spot_reclaim_time: ReclaimTime = 0
    end_time: UnixTime = None
    created_at: UnixTime = None
    last_started_at: UnixTime = None
    last_stopped_at: UnixTime = None
    connect_component_ssh: Annotated[SshComponent | None, BeforeValidator(_object_or_none)] = Field(
        default=None, alias="connectComponentSSH"
    )
    connect_component_jupyter: Annotated[JupyterComponent | None, BeforeValidator(_object_or_none)] = None
    connect_component_web_terminal: Annotated[WebTerminalComponent | None, BeforeValidator(_object_or_none)] = None
    connect_component_log: Annotated[LogComponent | None, BeforeValidator(_object_or_none)] = None
    volume_mounts: Annotated[list[VolumeMount], BeforeValidator(_listish)] = Field(default_factory=list)
    node: Annotated[InstanceNode | None, BeforeValidator(_one_node)] = None


class _ListedFields(NovitaModel):
    """The fields of a listed instance that `Listed` keeps, validated with `NovitaInstance`'s loose types."""

    id: LooseStr = ""
    name: LooseStr = ""
    status: LooseStr = ""
    status_error: OptionalStatusError = None
    spot_status: LooseStr = ""
    spot_reclaim_time: ReclaimTime = 0


@dataclass(frozen=True, slots=True)
class Listed:
    """What a reconciler compares of each listed instance, and nothing else: the reconciler holds one per
    instance of the account for a whole pass, and a parsed `NovitaInstance` (port mappings, envs,
    components) is about 25 times larger (docs/performance.md, per-instance memory)."""

    id: str
    name: str
    status: str
    error: str  # Novita's statusError message, "" without one
    spot_reclaimed: bool  # a reclaim has begun (`spotReclaimTime` set): notified, reclaiming or done
    # Novita's spot fields as listed: `spotStatus` ("" for non-spot; `notified` during the notice before a
    # reclaim) and `spotReclaimTime` (unix seconds, 0 until a reclaim). Defaults, so that a `Listed` built
    # from the five fields above (the stored shared listing) still is one.
    spot_status: str = ""
    spot_reclaim_time: int = 0

    @classmethod
    def parse(cls, item: Any) -> Listed:
        f = _ListedFields.model_validate(item)
        return cls._of(f.id, f.name, f.status, f.status_error, f.spot_status, f.spot_reclaim_time)

    @classmethod
    def of(cls, instance: NovitaInstance) -> Listed:
        """The same view of an instance read by id."""
        i = instance
        return cls._of(i.id, i.name, i.status, i.status_error, i.spot_status, i.spot_reclaim_time)

    @classmethod
    def _of(cls, id: str, name: str, status: str, error: StatusError | None, spot: str, reclaim: int) -> Listed:
        # Statuses are a few words repeated across every instance: one string each, not one per instance.
        message = error.message if error is not None else ""
        return cls(id, name, sys.intern(status), message, reclaim > 0, sys.intern(spot), reclaim)

    @property
    def spot_notified(self) -> bool:
        """Novita has given notice of a reclaim that has not begun: the instance still runs until
        `spot_reclaim_time`."""
        return self.spot_status == "notified"


class InstancePage(NovitaModel):
    instances: Annotated[list[NovitaInstance], BeforeValidator(_listish)] = Field(default_factory=list)
    total: LooseInt = 0

    @property
    def items(self) -> list[NovitaInstance]:
        """The page's instances, under the name every page gives them (`paging.walk_pages`)."""
        return self.instances


class Migration(NovitaModel):
    """Novita's answer to a migrate. Undocumented [INF]: the emulator answers `{instanceId, state, jobId}`
    plus `newInstanceId` when the instance comes back under a new id; a third-party client reads
    `newInstanceId` (else `instanceId`) and `message`. Whatever is missing reads as ""."""

    model_config = ConfigDict(frozen=True)

    instance_id: LooseStr = ""  # the instance the migrate was asked for
    new_instance_id: LooseStr = ""  # set when the instance comes back under another id
    job_id: LooseStr = ""
    state: LooseStr = ""
    message: LooseStr = ""

    @property
    def moved_to(self) -> str:
        """The id the migrated instance runs under from now on."""
        return self.new_instance_id or self.instance_id


JOB_TYPES = ("saveImage", "instanceMigrate", "autoInstanceMigrate")
JOB_STATES = ("pulling", "running", "fail", "success", "break")
JOB_FINISHED = frozenset({"fail", "success", "break"})


def _flat_job_state(value: Any) -> Any:
    """`state: {state, error, errorMessage}` read into the job's own `state`, `error` and `errorMessage`
    (a bare string is the state itself)."""
    if not isinstance(value, dict):
        return value
    state = value.get("state")
    if isinstance(state, dict):
        value = {**value, "state": state.get("state"), "error": state.get("error")}
        value["errorMessage"] = state.get("errorMessage", state.get("error_message"))
    return value


class Job(NovitaModel):
    """One of `GET /jobs`: `Id` with a capital I, its `state` (`pulling`, `running`, `fail`, `success`,
    `break`), and when it failed, Novita's `error` and `errorMessage`. `updated_at` is `updateAt`, which
    the reference does not list but Novita's own job answers carry [3P]."""

    model_config = ConfigDict(frozen=True)

    id: LooseStr = Field(default="", validation_alias=AliasChoices("Id", "id", "jobId"))
    user: LooseStr = ""
    type: LooseStr = ""
    state: LooseStr = ""
    error: LooseStr = ""
    error_message: LooseStr = ""
    log_address: LooseStr = ""
    created_at: UnixTime = None
    updated_at: UnixTime = Field(default=None, validation_alias=AliasChoices("updateAt", "updatedAt"))
    instance_id: LooseStr = ""
    envs: Annotated[list[EnvVar], BeforeValidator(_listish)] = Field(default_factory=list, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        return _flat_job_state(value)

    @property
    def finished(self) -> bool:
        return self.state in JOB_FINISHED

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


class JobPage(NovitaModel):
    jobs: Annotated[list[Job], BeforeValidator(_listish)] = Field(default_factory=list)
    total: LooseInt = 0

    @property
    def items(self) -> list[Job]:
        """The page's jobs, under the name every page gives them (`paging.walk_pages`)."""
        return self.jobs


PREWARM_STATES = ("Pending", "Running", "Succeeded", "Failed")


class PrewarmProduct(NovitaModel):
    product_id: LooseStr = ""
    product_name: LooseStr = ""


class PrewarmTask(NovitaModel):
    """An image prewarm task (`GET /image/prewarm`): Novita pulls `image_url` onto the nodes of `cluster_id`
    (for `products`, or all when empty) so creates there skip most of the pull. `state` is `Pending`,
    `Running`, `Succeeded` or `Failed` (`reason` then says why); `image_size` is in bytes."""

    model_config = ConfigDict(frozen=True)

    id: LooseStr
    image_name: LooseStr = ""
    image_url: LooseStr = ""
    repository_auth: LooseStr = ""
    cluster_id: LooseStr = ""
    cluster_name: LooseStr = ""
    products: Annotated[list[PrewarmProduct], BeforeValidator(_listish)] = Field(default_factory=list)
    image_size: LooseInt = 0
    create_time: UnixTime = None
    state: LooseStr = ""
    complete_time: UnixTime = None
    note: LooseStr = ""
    reason: Annotated[list[str], BeforeValidator(_listish)] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in ("Succeeded", "Failed")

    @property
    def succeeded(self) -> bool:
        return self.state == "Succeeded"


class PrewarmTaskPage(NovitaModel):
    tasks: Annotated[list[PrewarmTask], BeforeValidator(_listish)] = Field(
        default_factory=list, validation_alias=AliasChoices("data", "tasks")
    )
    total: LooseInt = 0

    @property
    def items(self) -> list[PrewarmTask]:
        """The page's tasks, under the name every page gives them (`paging.walk_pages`)."""
        return self.tasks


class PrewarmQuota(NovitaModel):
    """`GET /image/prewarm/quota`: tasks held (`total`), the most allowed (`limit`), and the largest image
    a task may prewarm (`per_image_size`, GB [INF: the unit])."""

    total: LooseInt = 0
    limit: LooseInt = 0
    per_image_size: LooseInt = 0


class CreateInstanceRequest(NovitaModel):
    """Body of `POST /gpu/instance/create`; `to_payload()` gives Novita's field names."""

    name: str
    product_id: str
    gpu_num: int
    rootfs_size: int
    image_url: str
    kind: str = "gpu"
    cluster_id: str | None = None
    image_auth: str | None = Field(default=None, repr=False)
    image_auth_id: str | None = None
    ports: str | None = None
    envs: list[EnvVar] = Field(default_factory=list, repr=False)
    command: str | None = None
    entrypoint: str | None = None
    billing_mode: str = "onDemand"
    month: int | None = None  # subscription length for `monthly` (Novita forces monthly when > 0)
    network_storages: list[NetworkStorageMount] | None = None  # each must be in the instance's cluster

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


# ---- monitoring ---------------------------------------------------------------------------------


def _metric_value(value: Any) -> float | None:
    """A finite number from a number or a string of one; None for anything else (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _metric_time(value: Any) -> float | None:
    """Unix seconds from a number or a string of one; milliseconds (anything past year 5000) are scaled."""
    seconds = _metric_value(value)
    if seconds is None or seconds <= 0:
        return None
    return seconds / 1000 if seconds > 1e11 else seconds


class MetricPoint(NovitaModel):
    """One sample: unix seconds and a percentage (0-100)."""

    model_config = ConfigDict(frozen=True)

    timestamp: float
    value: float


def _points(value: Any) -> list[MetricPoint]:
    """A series as Novita sends it, keeping only readable samples, oldest first, one per timestamp.

    Tolerant on purpose: a sample with a missing, null, NaN or non-numeric value is dropped, not the
    whole answer (one bad sample must not blind auto-stop to the others), and `{}`/`""`/null is empty."""
    items = _listish(value)
    if not isinstance(items, list):
        return []
    by_time: dict[float, MetricPoint] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        at, number = _metric_time(item.get("timestamp")), _metric_value(item.get("value"))
        if at is not None and number is not None:
            by_time[at] = MetricPoint(timestamp=at, value=number)
    return [by_time[at] for at in sorted(by_time)]


Series = Annotated[list[MetricPoint], BeforeValidator(_points)]


class GpuSeries(NovitaModel):
    """One GPU's samples (`gpuIds` item)."""

    gpu_id: Annotated[str, BeforeValidator(lambda v: "" if v is None else str(v))] = ""
    items: Series = Field(default_factory=list)


def _gpu_ids(value: Any) -> list[Any]:
    items = _listish(value)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


class GpuMetric(NovitaModel):
    """`gpuUtilization` / `gpuMemUtilization`: the average over the instance's GPUs and each GPU."""

    avg: Series = Field(default_factory=list)
    gpu_ids: Annotated[list[GpuSeries], BeforeValidator(_gpu_ids)] = Field(default_factory=list)


def _gpu_metric(value: Any) -> Any:
    """An object as documented; a bare list is read as the average; anything else as no data."""
    if isinstance(value, list):
        return {"avg": value}
    return value if isinstance(value, dict) else {}


class InstanceMetrics(NovitaModel):
    """`GET /openapi/v1/metrics/gpu/instance`: an instance's monitoring series (percentages)."""

    cpu_utilization: Series = Field(default_factory=list)
    mem_utilization: Series = Field(default_factory=list)
    root_disk_utilization: Series = Field(default_factory=list)
    gpu_utilization: Annotated[GpuMetric, BeforeValidator(_gpu_metric)] = Field(default_factory=GpuMetric)
    gpu_mem_utilization: Annotated[GpuMetric, BeforeValidator(_gpu_metric)] = Field(default_factory=GpuMetric)
