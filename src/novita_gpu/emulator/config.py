"""Emulator settings: speed, seed, accepted keys, not-found status, migrate ids, timings and faults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
    faults: FaultConfig = Field(default_factory=FaultConfig)

    def __repr__(self) -> str:
        # API keys are secrets: never print them.
        return f"EmulatorConfig(speed={self.speed}, seed={self.seed}, api_keys=<{len(self.api_keys)} keys>)"

    __str__ = __repr__
