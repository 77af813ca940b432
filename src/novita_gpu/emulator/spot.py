"""The world's spot reclaims, migrations and their jobs, and the spot settings they follow.

A mixin of `World` (world.py), kept apart so that the world's module stays readable: it works on the
world's instances under the world's lock, and declares below what it uses of the world.
"""

from __future__ import annotations

import itertools
import random
import string
import threading
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from novita_gpu.emulator.catalog import SPOT
from novita_gpu.emulator.config import EmulatorConfig
from novita_gpu.emulator.errors import EmulatedError, invalid_state_change
from novita_gpu.emulator.faults import FaultInjector
from novita_gpu.emulator.instance import EmulatedInstance, Phase, PortMapping
from novita_gpu.emulator.jobs import INSTANCE_MIGRATE, JOB, SPOT_SETTINGS, Job, JobQuery, SpotSettings
from novita_gpu.emulator.state_file import StateFile

_BASE36 = string.ascii_lowercase + string.digits


class SpotMixin:
    config: EmulatorConfig
    faults: FaultInjector
    _lock: threading.RLock
    _rng: random.Random
    _state: StateFile | None
    _instances: dict[str, EmulatedInstance]
    _jobs: dict[str, Job]
    _spot: SpotSettings
    _user: str

    if TYPE_CHECKING:  # World's, and PlacementMixin's

        def now(self) -> float: ...
        def _visible(self, instance_id: str, now: float) -> EmulatedInstance: ...
        def _saved(self, instance: EmulatedInstance) -> EmulatedInstance: ...
        def _has_room(self, cluster_id: str, product_id: str, gpus: int, now: float, *, spot: bool = False) -> bool: ...
        def _seconds(self, timing: str) -> float: ...
        def _run(self, instance: EmulatedInstance, at: float, boot_timing: str) -> None: ...
        def _unique_id(self) -> str: ...
        def _next_node(self, node: int) -> int: ...
        def _pulled(self, instance: EmulatedInstance, ready_at: float) -> None: ...

    # --- reclaims --------------------------------------------------------------------------------

    def reclaim(self, instance_id: str) -> EmulatedInstance:
        """Start a spot reclaim now: notified (the notice) -> reclaiming -> terminated (status exited)."""
        with self._lock:
            now = self.now()
            instance = self._visible(instance_id, now)
            if not self._reclaimable(instance, now):
                raise invalid_state_change()
            instance.truncate_after(now)
            self._schedule_reclaim(instance, now)
            return self._saved(instance)

    def reclaim_many(self, count: int | None = None, ids: list[str] | None = None) -> list[str]:
        """Reclaim these running spot instances now (all or none: an id that cannot be reclaimed refuses the
        lot), or the `count` oldest (fewer if fewer run); the ids reclaimed, as the reclaim fault does."""
        with self._lock:
            now = self.now()
            if ids is not None:
                chosen = [self._visible(i, now) for i in dict.fromkeys(ids)]
                for instance in chosen:
                    if not self._reclaimable(instance, now):
                        raise EmulatedError(
                            400, "CONFLICT", f"invalid state change: {instance.id} is not a running spot instance"
                        )
            else:
                eligible = (i for i in self._instances.values() if i.visible_at(now) and self._reclaimable(i, now))
                chosen = list(itertools.islice(eligible, count or 0))
            for instance in chosen:
                instance.truncate_after(now)
                self._schedule_reclaim(instance, now)
                self._saved(instance)
            return [i.id for i in chosen]

    @staticmethod
    def _reclaimable(instance: EmulatedInstance, now: float) -> bool:
        phase = instance.phase_at(now)
        return instance.billing_mode == SPOT and phase.status == "running" and phase.spot_status == "running"

    def _schedule_reclaim(self, instance: EmulatedInstance, at: float) -> None:
        """Novita's warning first: `notified` (still running, `spotReclaimTime` the stop to come) for the
        notice, then `reclaiming` (status `stopping`), then `terminated` (status `exited`)."""
        due = at + self._spot.notice_seconds / self.config.speed
        instance.phases.append(Phase("running", at, "notified", reclaim_at=due))
        instance.phases.append(Phase("stopping", due, "reclaiming"))
        instance.phases.append(Phase("exited", due + self._seconds("spot_reclaiming"), "terminated"))

    # --- migration and jobs ----------------------------------------------------------------------

    def migrate(self, instance_id: str) -> tuple[EmulatedInstance, Job]:
        """Move an exited instance to another node of its cluster: `migrating`, then `running` (or back to
        `exited` when the job fails), its local disk lost, its network storages still mounted. Holds its
        GPUs from now on, as a start does. Under the same id, or (`migrateNewId`) under a new one with the
        same name and spec, the old id `removed` at once. Returns the instance that moves and its job."""
        with self._lock:
            now = self.now()
            old = self._visible(instance_id, now)
            phase = old.phase_at(now)
            if phase.status != "exited":
                raise invalid_state_change()
            spot = old.billing_mode == SPOT
            if old.kind == "gpu" and not self._has_room(old.cluster_id, old.product_id, old.gpu_num, now, spot=spot):
                raise EmulatedError(
                    400, "MIGRATE_INSUFFICIENT_RESOURCE", "insufficient resource to migrate the instance"
                )
            fails = self.faults.take_migrate_failure()
            old.truncate_after(now)
            new_ports = [
                PortMapping(m.port, m.type, self._rng.randint(20000, 59999)) if m.type == "tcp" else m
                for m in old.ports
            ]
            if self._spot.migrate_new_id:
                target = replace(
                    old,
                    id=self._unique_id(),
                    ports=new_ports,
                    envs=[dict(e) for e in old.envs],
                    network_storages=[dict(m) for m in old.network_storages],
                    created_at=now,
                    visible_from=now,
                    phases=[],
                    app_boots=[],
                    gone_at=None,
                    disk="",
                    disk_since=0,
                    node=self._next_node(old.node),
                )
                old.phases.append(Phase("removed", now, phase.spot_status))
                old.gone_at = now + self.config.removed_visible_seconds / self.config.speed
                self._saved(old)
                self._instances[target.id] = target
            else:
                target = old
                target.ports, target.node = new_ports, self._next_node(old.node)
            target.phases.append(Phase("migrating", now, phase.spot_status))
            arrives = now + self._seconds("migrating")
            if fails:
                target.phases.append(Phase("exited", arrives, phase.spot_status))
            else:
                self._pulled(target, arrives)  # the new node has its image from then on
                self._run(target, arrives, "app_boot_after_start")
            job = Job(
                id=self._job_id(),
                type=INSTANCE_MIGRATE,
                user=self._user,
                instance_id=old.id,
                target_id=target.id,
                created_at=now,
                fail_message="no node could take the instance (fault migrate_job_fails)" if fails else "",
            )
            self._jobs[job.id] = job
            if self._state is not None:
                self._state.save_object(JOB, job.id, asdict(job))
            return self._saved(target), job

    def jobs(self, query: JobQuery) -> tuple[list[dict[str, object]], int]:
        """`GET /jobs`: the matching jobs as Novita shapes them, newest first, and how many match."""
        with self._lock:
            now = self.now()
            found = []
            for job in reversed(self._jobs.values()):
                target = self._instances.get(job.target_id)
                if query.matches(job, job.outcome(target, now)[0]):
                    found.append(job.json(target, now))
            start = (query.page_num - 1) * query.page_size
            return found[start : start + query.page_size], len(found)

    def running_jobs(self, instance_id: str) -> list[dict[str, str]]:
        """The instance detail's `jobs`: `[{id, type}]` of the jobs running on it."""
        with self._lock:
            now = self.now()
            target = self._instances.get(instance_id)
            return [
                {"id": job.id, "type": job.type}
                for job in self._jobs.values()
                if job.target_id == instance_id and job.outcome(target, now)[0] == "running"
            ]

    def spot_settings(self) -> SpotSettings:
        with self._lock:
            return self._spot.model_copy()

    def set_spot_settings(self, changes: dict[str, object]) -> SpotSettings:
        """Apply a partial update (camelCase fields); raises pydantic.ValidationError on bad fields or values.
        Kept in the state file, as capacities changed through the control API are."""
        with self._lock:
            self._spot = SpotSettings.model_validate({**self._spot.model_dump(by_alias=True), **changes})
            if self._state is not None:
                self._state.save_object(SPOT_SETTINGS, "spot", {"id": "spot", **self._spot.model_dump()})
            return self._spot.model_copy()

    def _job_id(self) -> str:
        """16 lowercase letters and digits, as Novita's job ids (e.g. `10wi9visv0rqt57w`)."""
        while (candidate := "".join(self._rng.choice(_BASE36) for _ in range(16))) in self._jobs:
            continue
        return candidate
