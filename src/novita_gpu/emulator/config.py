"""Emulator settings: speed, seed, accepted keys, not-found status, migrate ids, timings, images and faults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from novita_gpu.emulator.faults import FaultConfig


class Timings(BaseModel):
    """Durations in emulated seconds at speed 1 (each is divided by `EmulatorConfig.speed`).

    Each phase lasts the given time before the next status; e.g. a new instance is `toCreate` for
    `to_create`, `creating` for `creating`, `pulling` for `pulling`, then `running`.
    """

    model_config = ConfigDict(extra="forbid")

    to_create: float = Field(default=1.0, ge=0)
    creating: float = Field(default=2.0, ge=0)
    pulling: float = Field(default=7.0, ge=0)
    app_boot_after_create: float = Field(default=4.0, ge=0)
    to_stop: float = Field(default=1.0, ge=0)
    stopping: float = Field(default=2.0, ge=0)
    to_start: float = Field(default=1.0, ge=0)
    starting: float = Field(default=4.0, ge=0)
    app_boot_after_start: float = Field(default=3.0, ge=0)
    to_restart: float = Field(default=1.0, ge=0)
    restarting: float = Field(default=3.0, ge=0)
    to_remove: float = Field(default=1.0, ge=0)
    removing: float = Field(default=1.0, ge=0)
    # A reclaim's notice (spotStatus `notified`, status still `running`) before the stop; 0: none. The
    # control API's `PUT /_emulator/spot {"noticeSeconds"}` changes it at run time.
    spot_notice: float = Field(default=30.0, ge=0)
    spot_reclaiming: float = Field(default=2.0, ge=0)
    # A migrate: `migrating` this long, then `running` on another node (the app boots app_boot_after_start later).
    migrating: float = Field(default=10.0, ge=0)
    prewarm_pending: float = Field(default=2.0, ge=0)
    prewarm_running: float = Field(default=30.0, ge=0)
    # How far behind the clock the metrics endpoint's latest sample is (Novita documents about a minute).
    metrics_delay: float = Field(default=60.0, ge=0)


class ImageSettings(BaseModel):
    """How long an image takes to pull (docs/emulator.md, Images and nodes). Snake case in the configuration,
    camelCase on the control API (`GET/PUT /_emulator/images`); seconds are emulated, divided by the speed.

    An image (by its exact URL) with a size pulls in size / `pull_gb_per_second` seconds, or in
    `cached_pull_seconds` when it is already on the instance's node or prewarmed in its cluster. An image
    without one (neither in `sizes_gb` nor a `default_size_gb`) pulls in `timings.pulling`, wherever it goes.
    """

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    sizes_gb: dict[str, float] = Field(default_factory=dict)  # image URL -> GB
    default_size_gb: float | None = Field(default=None, gt=0)  # for images not in sizes_gb; None: unsized
    pull_gb_per_second: float = Field(default=0.1, gt=0)  # at speed 1: 15 GB in 150 s
    cached_pull_seconds: float = Field(default=1.0, ge=0)
    # Creates land on the nodes of their cluster in turn (round robin), so the image is on a node once one
    # of the first `nodes_per_cluster` creates in the cluster has pulled it there.
    nodes_per_cluster: int = Field(default=16, ge=1)

    @field_validator("sizes_gb")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not url for url in value) or any(not gb > 0 for gb in value.values()):
            raise ValueError("each image URL needs a size in GB above 0")
        return value

    def size_gb(self, image_url: str) -> float | None:
        return self.sizes_gb.get(image_url, self.default_size_gb)


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speed: float = Field(default=1.0, gt=0)
    seed: int = 42
    api_keys: list[str] = Field(default_factory=list)
    not_found_status: int = Field(default=400, ge=400, le=499)
    removed_visible_seconds: float = Field(default=60.0, ge=0)
    # `node` in an instance's detail: Novita's reference types it as an array of {maxRootfsSize}, while
    # Novita's console and typed clients read one object (docs/emulator.md). "list" serves the array.
    node_shape: Literal["object", "list"] = "object"
    # A migrated instance keeps its id (False), or comes back under a new id with the same name and spec, the
    # old id `removed` (True). Novita documents neither; `PUT /_emulator/spot {"migrateNewId"}` changes it.
    migrate_new_id: bool = False
    timings: Timings = Field(default_factory=Timings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    faults: FaultConfig = Field(default_factory=FaultConfig)

    def __repr__(self) -> str:
        # API keys are secrets: never print them.
        return f"EmulatorConfig(speed={self.speed}, seed={self.seed}, api_keys=<{len(self.api_keys)} keys>)"

    __str__ = __repr__
