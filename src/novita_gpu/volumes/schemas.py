"""The volumes API's request bodies and the shapes of its answers (validated strictly, as instances')."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, StrictInt, StrictStr

from novita_gpu.kit.schemas import NO_NUL, Answer, Body, whole
from novita_gpu.volumes.lifecycle import MAX_SIZE_GB, MIN_SIZE_GB
from novita_gpu_client.vocabulary import NAME_PATTERN

# A volume id (vol_ + 20 hex digits) or a name: what a path or a mount may name.
VOLUME_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MOUNT_POINT_PATTERN = r"^/[^\x00]*$"
DEFAULT_MOUNT_POINT = "/network"  # Novita's default


SizeGb = Annotated[
    Annotated[StrictInt, Field(ge=MIN_SIZE_GB, le=MAX_SIZE_GB), BeforeValidator(whole)],
    Field(alias="sizeGb", description="GB, at least 10."),
]


class CreateVolumeIn(Body):
    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN, description="Unique among your live volumes.")]
    region: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=120,
            pattern=NO_NUL,
            description="A region (cluster) name or id, as instances take it.",
        ),
    ]
    size_gb: SizeGb


class ResizeVolumeIn(Body):
    size_gb: SizeGb


class AdoptVolumeIn(Body):
    storage_id: Annotated[StrictStr, Field(alias="storageId", min_length=1, max_length=64, pattern=NO_NUL)]
    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN)]


class VolumeMountIn(Body):
    """A volume an instance mounts, by name or id; the instance is placed in the volume's region."""

    volume: Annotated[StrictStr, Field(pattern=VOLUME_REF_PATTERN, description="The volume's name or id.")]
    mount_point: Annotated[
        StrictStr, Field(alias="mountPoint", min_length=1, max_length=4095, pattern=MOUNT_POINT_PATTERN)
    ] = DEFAULT_MOUNT_POINT


class VolumeAnswer(Answer):
    volume_id: str
    name: str
    status: str = Field(description="creating, available, deleting, deleted or failed.")
    status_message: str | None
    region: str
    cluster_id: str
    size_gb: int
    storage_id: str | None = Field(description="Novita's storageId, once made.")
    price_per_hour: float | None = Field(description="USD per hour for the whole volume (Novita's price).")
    price_per_gb_month: float | None = Field(description="The same price per GB and 730-hour month.")
    adopted: bool = Field(description="Made outside the service (Novita's console) and adopted.")
    mounted_by: list[dict[str, str]] = Field(
        description="Instances that are not terminated and mount it: [{instanceId, name, mountPoint}]."
    )
    created_at: str
    available_at: str | None
    deleted_at: str | None
    updated_at: str


class VolumePageAnswer(Answer):
    volumes: list[VolumeAnswer]
    total: int
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class UnmanagedStorageAnswer(Answer):
    storage_id: str
    name: str
    region: str
    cluster_id: str
    size_gb: int
    price_per_hour: float


class UnmanagedStoragesAnswer(Answer):
    storages: list[UnmanagedStorageAnswer]


class InstanceVolumeAnswer(Answer):
    volume_id: str
    name: str
    mount_point: str
    storage_id: str
