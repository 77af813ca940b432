"""The emulated Novita account: catalog, capacity, instances and their status machine.

Thread-safe: the app may be served from a uvicorn thread while a test advances a shared clock from
another thread. Every method takes the lock; instance states are computed from the clock on demand.
"""

from __future__ import annotations

import itertools
import random
import string
import threading
from collections import Counter
from dataclasses import asdict, dataclass, replace

from novita_gpu.emulator.account import NETWORK_STORAGE, REGISTRY_AUTH, Account
from novita_gpu.emulator.catalog import MONTHLY, SPOT, Cluster, EmulatedCatalog, Product, build_catalog
from novita_gpu.emulator.config import EmulatorConfig
from novita_gpu.emulator.errors import EmulatedError, invalid_param, invalid_state_change
from novita_gpu.emulator.faults import FaultInjector
from novita_gpu.emulator.instance import DISKLESS, EmulatedInstance, Phase, PortMapping
from novita_gpu.emulator.jobs import INSTANCE_MIGRATE, JOB, SPOT_SETTINGS, Job, JobQuery, SpotSettings
from novita_gpu.emulator.state_file import StateFile
from novita_gpu.emulator.utilization import (
    UTILIZATION,
    MetricsQuery,
    Utilization,
    metrics_answer,
    parse_utilization,
)
from novita_gpu.kit.clock import Clock, SystemClock

MONTH_SECONDS = 30 * 24 * 3600
_BASE36 = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class CreateRequest:
    """A validated create body (see validation.py)."""

    name: str
    product_id: str
    gpu_num: int
    rootfs_size: int
    image_url: str
    image_auth_id: str
    ports: list[tuple[int, str]]
    envs: list[dict[str, str]]
    command: str
    entrypoint: str
    cluster_id: str
    kind: str
    billing_mode: str
    month: int
    network_storages: tuple[tuple[str, str], ...] = ()  # (storage id, mount point)


@dataclass(frozen=True)
class Sizing:
    gpu_num: int
    cpu_num: int
    memory: int  # GB
    rootfs_size: int  # GB
    max_rootfs: int  # GB, what the node allows the system disk to grow to


@dataclass(frozen=True)
class InstanceQuery:
    page_size: int
    page_num: int
    name: str
    product_name: str
    status: str


class World:
    def __init__(self, config: EmulatorConfig, clock: Clock | None = None, state: StateFile | None = None) -> None:
        """`state`: a file the world is kept in (loaded now, written on every change); None keeps it in memory."""
        self.config = config
        self.clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._state = state
        self._fresh()
        if state is not None:
            self._instances.update((i.id, i) for i in state.instances())
            self.catalog.capacity.update(state.capacities())
            self.account.attach(state)
            self._utilization.update((b["id"], Utilization.from_state(b)) for b in state.objects(UTILIZATION))
            self._jobs.update((b["id"], Job(**b)) for b in state.objects(JOB))
            for settings in state.objects(SPOT_SETTINGS):  # set through the control API before the restart
                self._spot = SpotSettings.model_validate({k: v for k, v in settings.items() if k != "id"})

    def reset(self) -> None:
        """A fresh world from the same seed: catalog, capacities, instances, faults and stats."""
        with self._lock:
            self._fresh()
            if self._state is not None:
                self._state.clear()
                self.account.attach(self._state)

    def close(self) -> None:
        if self._state is not None:
            self._state.close()

    def _fresh(self) -> None:
        self._rng = random.Random(self.config.seed)
        self.catalog: EmulatedCatalog = build_catalog(self._rng)
        self.faults = FaultInjector(self.config.faults, self.config.seed + 1)
        self._instances: dict[str, EmulatedInstance] = {}
        self._pool_counted: tuple[dict[str, EmulatedInstance], int, Counter[tuple[str, str]]] = (
            self._instances,
            0,
            Counter(),
        )
        self._utilization: dict[str, Utilization] = {}  # instance id -> its GPU utilization schedule
        self._jobs: dict[str, Job] = {}  # in creation order
        self._spot = SpotSettings(
            notice_seconds=self.config.timings.spot_notice, migrate_new_id=self.config.migrate_new_id
        )
        # The account's user id, as jobs name their creator [INF: its form]; its own random source, so that
        # it moves no other seeded id.
        self._user = f"{random.Random(self.config.seed + 2).getrandbits(128):032x}"
        self._stats: Counter[str] = Counter()
        self.account: Account = Account(self.catalog, self._rng, self._lock, self.now, self.config, self._in_use)

    def _in_use(self, kind: str, object_id: str) -> bool:
        """Whether an instance that is not (being) deleted uses this registry auth or network storage."""
        now = self.now()
        for instance in self._instances.values():
            if not instance.visible_at(now) or instance.status_at(now) in ("toRemove", "removing", "removed"):
                continue
            if kind == REGISTRY_AUTH and instance.image_auth_id == object_id:
                return True
            if kind == NETWORK_STORAGE and any(m["id"] == object_id for m in instance.network_storages):
                return True
        return False

    def _saved(self, instance: EmulatedInstance) -> EmulatedInstance:
        if self._state is not None:
            self._state.save(instance)
        return instance

    def now(self) -> float:
        return self.clock.now().timestamp()

    # --- stats -----------------------------------------------------------------------------------

    def count_request(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._stats.items()))

    def clear_stats(self) -> None:
        with self._lock:
            self._stats.clear()

    # --- capacity --------------------------------------------------------------------------------

    def free_gpus(self, cluster_id: str, product_id: str) -> int:
        with self._lock:
            total = self.catalog.capacity.get((cluster_id, product_id), 0)
            return max(0, total - self._used_gpus(cluster_id, product_id, self.now()))

    def set_capacity(self, cluster_id: str, product_id: str, gpus: int) -> None:
        with self._lock:
            product = self.catalog.product(product_id)
            cluster = self.catalog.cluster(cluster_id)
            if product is None or cluster is None or cluster.name not in product.regions:
                raise invalid_param(f"product {product_id!r} is not offered in cluster {cluster_id!r}")
            self.catalog.capacity[(cluster_id, product_id)] = gpus
            if self._state is not None:
                self._state.save_capacity(cluster_id, product_id, gpus)

    def capacity(self) -> list[dict[str, object]]:
        with self._lock:
            now = self.now()
            return [
                {"clusterId": c, "productId": p, "gpus": total, "used": self._used_gpus(c, p, now)}
                for (c, p), total in sorted(self.catalog.capacity.items())
            ]

    def _used_gpus(self, cluster_id: str, product_id: str, now: float) -> int:
        return sum(
            i.gpu_num
            for i in self._instances.values()
            if i.cluster_id == cluster_id and i.product_id == product_id and i.holds_capacity_at(now)
        )

    def _has_room(self, cluster_id: str, product_id: str, gpus: int, now: float) -> bool:
        total = self.catalog.capacity.get((cluster_id, product_id), 0)
        if total - self._ever_gpus(cluster_id, product_id) >= gpus:
            return True  # even if every instance ever made there held its GPUs: no need to look at each
        return total - self._used_gpus(cluster_id, product_id, now) >= gpus

    def _ever_gpus(self, cluster_id: str, product_id: str) -> int:
        """GPUs of every instance ever made in (cluster, product): an upper bound of those in use, kept up
        to date by counting only instances added since the last call. Instances are never removed from the
        world (reset replaces the dict) and never change pool, so each create checks capacity in O(1)
        while room is plenty, rather than the status of every instance (O(N) per create at 10,000)."""
        if self._pool_counted[0] is not self._instances:
            self._pool_counted = (self._instances, 0, Counter())
        instances, counted, pools = self._pool_counted
        if counted < len(instances):
            for instance in itertools.islice(instances.values(), counted, None):
                pools[(instance.cluster_id, instance.product_id)] += instance.gpu_num
            self._pool_counted = (instances, len(instances), pools)
        return pools[(cluster_id, product_id)]

    def _require_capacity(self, cluster_id: str, product_id: str, gpus: int, now: float) -> None:
        if not self._has_room(cluster_id, product_id, gpus, now):
            raise EmulatedError(400, "INSUFFICIENT_RESOURCE", "insufficient resource for the requested product")

    # --- queries ---------------------------------------------------------------------------------

    def get(self, instance_id: str) -> EmulatedInstance:
        with self._lock:
            return self._visible(instance_id, self.now())

    def list_instances(self, query: InstanceQuery) -> tuple[list[EmulatedInstance], int]:
        with self._lock:
            now = self.now()
            name, product = query.name.lower(), query.product_name.lower()
            found = [
                i
                for i in reversed(self._instances.values())
                if i.visible_at(now)
                and name in i.name.lower()
                and product in i.product_name.lower()
                and (not query.status or i.status_at(now) == query.status)
            ]
            start = (query.page_num - 1) * query.page_size
            return found[start : start + query.page_size], len(found)

    def find(self, instance_id: str) -> EmulatedInstance | None:
        """Any instance created since the last reset, visible or not."""
        with self._lock:
            return self._instances.get(instance_id)

    def all_instances(self) -> list[EmulatedInstance]:
        with self._lock:
            return list(self._instances.values())

    def _visible(self, instance_id: str, now: float) -> EmulatedInstance:
        instance = self._instances.get(instance_id)
        if instance is None or not instance.visible_at(now):
            raise EmulatedError(self.config.not_found_status, "RESOURCE_NOT_FOUND", "instance not found")
        return instance

    # --- monitoring ------------------------------------------------------------------------------

    def set_utilization(self, instance_id: str, body: dict[str, object]) -> dict[str, object]:
        """Set an instance's GPU utilization from now on (a level or a schedule; see utilization.py)."""
        with self._lock:
            now = self.now()
            if instance_id not in self._instances:
                raise EmulatedError(404, "RESOURCE_NOT_FOUND", "instance not found")
            schedule = self._utilization.setdefault(instance_id, Utilization())
            schedule.replace_from(now, parse_utilization(body, now))
            if self._state is not None:
                self._state.save_object(UTILIZATION, instance_id, schedule.state(instance_id))
            return schedule.json(instance_id, now)

    def utilization(self, instance_id: str) -> dict[str, object]:
        with self._lock:
            if instance_id not in self._instances:
                raise EmulatedError(404, "RESOURCE_NOT_FOUND", "instance not found")
            return self._utilization.get(instance_id, Utilization()).json(instance_id, self.now())

    def metrics(self, instance_id: str, query: MetricsQuery) -> dict[str, object]:
        """Novita's monitoring answer for a visible instance (samples only while it ran, a minute late)."""
        with self._lock:
            now = self.now()
            instance = self._visible(instance_id, now)
            delay = self.config.timings.metrics_delay / self.config.speed
            return metrics_answer(instance, self._utilization.get(instance_id), query, now, delay)

    # --- data markers ----------------------------------------------------------------------------

    def disk(self, instance_id: str) -> str:
        """The data marker on the instance's local disk: "" on a new instance, and again once it has
        stopped (or been deleted, or migrated) since the marker was written."""
        with self._lock:
            return self._known(instance_id).disk_at(self.now())

    def write_disk(self, instance_id: str, data: str) -> str:
        """Write the marker on the instance's local disk: only while it has one (not stopped or deleted)."""
        with self._lock:
            now = self.now()
            instance = self._known(instance_id)
            status = instance.status_at(now)
            if not instance.visible_at(now) or status in DISKLESS:
                raise EmulatedError(
                    409, "CONFLICT", f"the instance is {status}: it has no local disk to write to until it runs"
                )
            instance.write_disk(data, now)
            self._saved(instance)
            return instance.disk_at(now)

    def volumes(self, instance_id: str) -> list[dict[str, str]]:
        """The network storages the instance mounts, each with its data marker as the instance reads it
        ("" for a storage deleted since)."""
        with self._lock:
            instance = self._known(instance_id)
            return [
                {
                    "storageId": m["id"],
                    "mountPoint": m["mountPoint"],
                    "bytes": storage.data if (storage := self.account.storage(m["id"])) is not None else "",
                }
                for m in instance.network_storages
            ]

    def _known(self, instance_id: str) -> EmulatedInstance:
        """Any instance since the last reset (the control API's 404 otherwise)."""
        instance = self._instances.get(instance_id)
        if instance is None:
            raise EmulatedError(404, "RESOURCE_NOT_FOUND", "instance not found")
        return instance

    # --- actions ---------------------------------------------------------------------------------

    def create(self, req: CreateRequest) -> EmulatedInstance:
        """Create now, or `create_delay_seconds` from now: the instance (and its timeline) appears then."""
        with self._lock:
            now = self.now() + self.faults.config.create_delay_seconds
            gpu = req.kind == "gpu"
            storage_cluster = self._storage_cluster(req)
            if gpu:
                instance = self._new_gpu_instance(req, now, storage_cluster)
            else:
                instance = self._new_cpu_instance(req, storage_cluster)
            instance.created_at = instance.visible_from = now
            instance.network_storages = [{"id": i, "mountPoint": m} for i, m in req.network_storages]
            self._instances[instance.id] = instance
            spot = "running" if instance.billing_mode == SPOT else ""
            t = self._schedule(
                instance,
                now,
                [("toCreate", "to_create"), ("creating", "creating"), ("pulling", "pulling")],
                spot,
            )
            if not self.faults.config.stuck_in_pulling:
                self._run(instance, t, "app_boot_after_create")
            return self._saved(instance)

    def start(self, instance_id: str) -> EmulatedInstance:
        with self._lock:
            now = self.now()
            instance = self._visible(instance_id, now)
            if instance.status_at(now) != "exited":
                raise invalid_state_change()
            if instance.kind == "gpu":
                self._require_capacity(instance.cluster_id, instance.product_id, instance.gpu_num, now)
            instance.truncate_after(now)
            spot = "running" if instance.billing_mode == SPOT else ""
            t = self._schedule(instance, now, [("toStart", "to_start"), ("starting", "starting")], spot)
            self._run(instance, t, "app_boot_after_start")
            return self._saved(instance)

    def _running_for_action(self, instance_id: str, now: float) -> tuple[EmulatedInstance, Phase]:
        """The instance and its current phase, for stop and restart (which need it running)."""
        instance = self._visible(instance_id, now)
        phase = instance.phase_at(now)
        if phase.status != "running":
            raise invalid_state_change()
        instance.truncate_after(now)
        return instance, phase

    def stop(self, instance_id: str) -> EmulatedInstance:
        with self._lock:
            now = self.now()
            instance, phase = self._running_for_action(instance_id, now)
            t = self._schedule(instance, now, [("toStop", "to_stop"), ("stopping", "stopping")], phase.spot_status)
            instance.phases.append(Phase("exited", t, phase.spot_status))
            return self._saved(instance)

    def restart(self, instance_id: str) -> EmulatedInstance:
        with self._lock:
            now = self.now()
            instance, phase = self._running_for_action(instance_id, now)
            t = self._schedule(
                instance, now, [("toRestart", "to_restart"), ("restarting", "restarting")], phase.spot_status
            )
            self._run(instance, t, "app_boot_after_start")
            return self._saved(instance)

    def delete(self, instance_id: str) -> EmulatedInstance:
        with self._lock:
            now = self.now()
            instance = self._visible(instance_id, now)
            phase = instance.phase_at(now)
            if phase.status in ("toRemove", "removing", "removed"):
                return self._saved(instance)
            if instance.billing_mode == MONTHLY:
                raise EmulatedError(400, "PREPAID_INSTANCE_NOT_SUPPORT_RELEASE", "monthly instances cannot be deleted")
            instance.truncate_after(now)
            t = self._schedule(instance, now, [("toRemove", "to_remove"), ("removing", "removing")], phase.spot_status)
            instance.phases.append(Phase("removed", t, phase.spot_status))
            instance.gone_at = t + self.config.removed_visible_seconds / self.config.speed
            return self._saved(instance)

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
            if old.kind == "gpu" and not self._has_room(old.cluster_id, old.product_id, old.gpu_num, now):
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
                    node=old.node + 1,
                )
                old.phases.append(Phase("removed", now, phase.spot_status))
                old.gone_at = now + self.config.removed_visible_seconds / self.config.speed
                self._saved(old)
                self._instances[target.id] = target
            else:
                target = old
                target.ports, target.node = new_ports, old.node + 1
            target.phases.append(Phase("migrating", now, phase.spot_status))
            arrives = now + self._seconds("migrating")
            if fails:
                target.phases.append(Phase("exited", arrives, phase.spot_status))
            else:
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

    # --- timeline building -----------------------------------------------------------------------

    def _seconds(self, timing: str) -> float:
        return float(getattr(self.config.timings, timing)) / self.config.speed

    def _schedule(self, instance: EmulatedInstance, start: float, steps: list[tuple[str, str]], spot: str) -> float:
        """Append consecutive phases from `start`; return when the last one ends."""
        t = start
        for status, timing in steps:
            instance.phases.append(Phase(status, t, spot))
            t += self._seconds(timing)
        return t

    def _run(self, instance: EmulatedInstance, at: float, boot_timing: str) -> None:
        spot = "running" if instance.billing_mode == SPOT else ""
        instance.phases.append(Phase("running", at, spot))
        instance.app_boots.append(at + self._seconds(boot_timing))
        rate = self.faults.config.spot_reclaim_per_hour
        if spot and rate > 0:
            self._schedule_reclaim(instance, at + self._rng.expovariate(rate / 3600) / self.config.speed)

    def _schedule_reclaim(self, instance: EmulatedInstance, at: float) -> None:
        """Novita's warning first: `notified` (still running, `spotReclaimTime` the stop to come) for the
        notice, then `reclaiming` (status `stopping`), then `terminated` (status `exited`)."""
        due = at + self._spot.notice_seconds / self.config.speed
        instance.phases.append(Phase("running", at, "notified", reclaim_at=due))
        instance.phases.append(Phase("stopping", due, "reclaiming"))
        instance.phases.append(Phase("exited", due + self._seconds("spot_reclaiming"), "terminated"))

    # --- instance construction -------------------------------------------------------------------

    def _storage_cluster(self, req: CreateRequest) -> Cluster | None:
        """The one cluster the mounted network storages are in: the instance must be created there (a
        storage is reachable from its own cluster only), so without a `clusterId` it is placed there."""
        clusters: set[str] = set()
        for storage_id, _ in req.network_storages:
            storage = self.account.storage(storage_id)
            if storage is None:
                raise EmulatedError(400, "NETWORK_STORAGE_NOT_FOUND", f"network storage {storage_id!r} not found")
            clusters.add(storage.cluster_id)
        if len(clusters) > 1:
            names = sorted(c.name for i in clusters if (c := self.catalog.cluster(i)) is not None)
            raise EmulatedError(
                400,
                "NETWORK_STORAGE_UNAVAILABLE",
                f"the network storages are in different clusters ({', '.join(names)}): one instance can mount "
                "storages of one cluster only",
            )
        if not clusters:
            return None
        cluster = self.catalog.cluster(clusters.pop())
        assert cluster is not None
        if req.cluster_id and req.cluster_id != cluster.id:
            wanted = self.catalog.cluster(req.cluster_id)
            if wanted is None:
                raise invalid_param(f"clusterId {req.cluster_id!r} not found")
            if not wanted.support_network_storage:
                raise EmulatedError(
                    400,
                    "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT",
                    f"cluster {wanted.name} does not support network storage (the network storage is in "
                    f"cluster {cluster.name}: the instance must be created there)",
                )
            raise EmulatedError(
                400,
                "NETWORK_STORAGE_UNAVAILABLE",
                f"the network storage is in cluster {cluster.name}, not in {wanted.name}: "
                f"the instance must be created in {cluster.name}",
            )
        return cluster

    def edit(self, instance_id: str, ports: list[tuple[int, str]] | None, expand_root_disk: int) -> EmulatedInstance:
        """Replace the exposed ports (None keeps them) and grow the system disk by `expand_root_disk` GB,
        up to the node's maxRootfsSize. Its status does not change [INF]."""
        with self._lock:
            now = self.now()
            instance = self._visible(instance_id, now)
            if instance.status_at(now) in ("toRemove", "removing", "removed"):
                raise invalid_state_change()
            if instance.rootfs_size + expand_root_disk > instance.max_rootfs:
                raise invalid_param(f"the system disk can grow to at most {instance.max_rootfs} GB")
            instance.rootfs_size += expand_root_disk
            if ports is not None:
                kept = {(m.port, m.type): m for m in instance.ports}
                instance.ports = [
                    kept.get((port, kind)) or PortMapping(port, kind, self._rng.randint(20000, 59999))
                    for port, kind in ports
                ]
            return self._saved(instance)

    def _new_gpu_instance(self, req: CreateRequest, now: float, storage_cluster: Cluster | None) -> EmulatedInstance:
        product = self.catalog.product(req.product_id)
        if product is None:
            raise invalid_param(f"productId {req.product_id!r} not found")
        if req.rootfs_size > product.max_rootfs:
            raise invalid_param(f"rootfsSize must be at most {product.max_rootfs} for this product")
        if req.gpu_num > product.max_gpus:
            raise invalid_param(f"gpuNum must be at most {product.max_gpus} for this product")
        if req.billing_mode == SPOT and not product.spot_price:
            raise EmulatedError(400, "UNSUPPORTED_BILLING_MODE", "spot is not offered for this product")
        cluster_id = self._choose_cluster(product, req, now, storage_cluster)
        n = req.gpu_num
        size = Sizing(n, product.cpu_per_gpu * n, product.memory_per_gpu * n, req.rootfs_size, product.max_rootfs)
        return self._instance(req, cluster_id, product.id, product.name, size, now)

    def _new_cpu_instance(self, req: CreateRequest, storage_cluster: Cluster | None) -> EmulatedInstance:
        product = self.catalog.cpu_product(req.product_id)
        if product is None:
            raise invalid_param(f"productId {req.product_id!r} not found")
        if req.billing_mode == SPOT:
            raise EmulatedError(400, "UNSUPPORTED_BILLING_MODE", "spot is not offered for CPU instances")
        regions = [c for c in self.catalog.clusters if c.name in product.regions]
        if req.cluster_id:
            regions = [c for c in regions if c.id == req.cluster_id]
            if not regions:
                raise invalid_param(f"product {product.id!r} is not offered in cluster {req.cluster_id!r}")
        if storage_cluster is not None:
            regions = [c for c in regions if c.id == storage_cluster.id]
            if not regions:
                raise _storage_unavailable(storage_cluster, product.id)
        cluster = self._rng.choice(regions)
        size = Sizing(0, product.cpu_num, product.memory_size, product.rootfs_size, product.rootfs_size)
        return self._instance(req, cluster.id, product.id, product.name, size, self.now())

    def _choose_cluster(self, product: Product, req: CreateRequest, now: float, storage_cluster: Cluster | None) -> str:
        clusters = self.catalog.product_clusters(product)
        if req.cluster_id:  # a storage's cluster is this one (_storage_cluster)
            if self.catalog.cluster(req.cluster_id) is None:
                raise invalid_param(f"clusterId {req.cluster_id!r} not found")
            if req.cluster_id not in {c.id for c in clusters}:
                raise invalid_param(f"product {product.id!r} is not offered in cluster {req.cluster_id!r}")
            self._require_capacity(req.cluster_id, product.id, req.gpu_num, now)
            return req.cluster_id
        if storage_cluster is not None:
            clusters = [c for c in clusters if c.id == storage_cluster.id]
            if not clusters:
                raise _storage_unavailable(storage_cluster, product.id)
        candidates = [c.id for c in clusters if self._has_room(c.id, product.id, req.gpu_num, now)]
        if not candidates:
            raise EmulatedError(400, "INSUFFICIENT_RESOURCE", "insufficient resource for the requested product")
        return self._rng.choice(candidates)

    def _instance(
        self,
        req: CreateRequest,
        cluster_id: str,
        product_id: str,
        product_name: str,
        size: Sizing,
        now: float,
    ) -> EmulatedInstance:
        cluster = self.catalog.cluster(cluster_id)
        assert cluster is not None
        end_time = str(int(now + req.month * MONTH_SECONDS)) if req.billing_mode == MONTHLY else "-1"
        return EmulatedInstance(
            id=self._unique_id(),
            name=req.name,
            cluster_id=cluster_id,
            cluster_name=cluster.name,
            product_id=product_id,
            product_name=product_name,
            kind=req.kind,
            gpu_num=size.gpu_num,
            cpu_num=size.cpu_num,
            memory=size.memory,
            rootfs_size=size.rootfs_size,
            max_rootfs=size.max_rootfs,
            image_url=req.image_url,
            image_auth_id=req.image_auth_id,
            command=req.command,
            entrypoint=req.entrypoint,
            ports=[PortMapping(port, kind, self._rng.randint(20000, 59999)) for port, kind in req.ports],
            envs=req.envs,
            billing_mode=req.billing_mode,
            end_time=end_time,
            ssh_password=self._secret(16),
            created_at=now,
        )

    def _unique_id(self) -> str:
        while (candidate := f"{self._rng.getrandbits(64):016x}") in self._instances:
            continue
        return candidate

    def _secret(self, n: int) -> str:
        return "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _storage_unavailable(cluster: Cluster, product_id: str) -> EmulatedError:
    """No `clusterId`, and the product is not sold where the storage is: the storage cannot be reached
    from any cluster the instance could be placed in [INF: the reason, "The network storage is
    unavailable" in Novita's console, fits better than the one for a cluster without network storage]."""
    return EmulatedError(
        400,
        "NETWORK_STORAGE_UNAVAILABLE",
        f"the network storage is in cluster {cluster.name}, where product {product_id!r} is not offered: "
        f"the instance must be created in {cluster.name}",
    )
