"""The emulated Novita account: catalog, capacity, instances and their status machine.

Thread-safe: the app may be served from a uvicorn thread while a test advances a shared clock from
another thread. Every method takes the lock; instance states are computed from the clock on demand.
Three jobs live in mixins of their own: spot reclaims, migrations and jobs (spot.py), where a new
instance goes and what it is made of (placement.py), and its node, image pulls and start refusals (images.py).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from dataclasses import dataclass

from novita_gpu.emulator.account import NETWORK_STORAGE, REGISTRY_AUTH, Account
from novita_gpu.emulator.catalog import MONTHLY, SPOT, EmulatedCatalog, build_catalog
from novita_gpu.emulator.config import EmulatorConfig
from novita_gpu.emulator.errors import EmulatedError, invalid_param, invalid_state_change
from novita_gpu.emulator.faults import FaultInjector
from novita_gpu.emulator.images import ImageMixin, no_capacity_to_start
from novita_gpu.emulator.instance import DISKLESS, EmulatedInstance, Phase, PortMapping
from novita_gpu.emulator.jobs import JOB, SPOT_SETTINGS, Job, SpotSettings
from novita_gpu.emulator.placement import CreateRequest, PlacementMixin
from novita_gpu.emulator.spot import SpotMixin
from novita_gpu.emulator.state_file import StateFile
from novita_gpu.emulator.utilization import (
    UTILIZATION,
    MetricsQuery,
    Utilization,
    metrics_answer,
    parse_utilization,
)
from novita_gpu.kit.clock import Clock, SystemClock


@dataclass(frozen=True)
class InstanceQuery:
    page_size: int
    page_num: int
    name: str
    product_name: str
    status: str


class World(SpotMixin, PlacementMixin, ImageMixin):
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
            self._load_images(state)

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
        self._fresh_images()
        self.account: Account = Account(
            self.catalog, self._rng, self._lock, self.now, self.config, self._in_use, lambda: self._images
        )

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

    def _has_room(self, cluster_id: str, product_id: str, gpus: int, now: float, *, spot: bool = False) -> bool:
        """Room for `gpus` more in (cluster, product); for spot, also within the cluster's spot capacity."""
        spot_total = self._spot.capacity.get(cluster_id) if spot else None
        if spot_total is not None:
            used = sum(
                i.gpu_num
                for i in self._instances.values()
                if i.cluster_id == cluster_id and i.billing_mode == SPOT and i.holds_capacity_at(now)
            )
            if spot_total - used < gpus:
                return False
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

    def _require_capacity(self, cluster_id: str, product_id: str, gpus: int, now: float, *, spot: bool = False) -> None:
        if not self._has_room(cluster_id, product_id, gpus, now, spot=spot):
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
            self._place(instance)
            spot = "running" if instance.billing_mode == SPOT else ""
            t = self._schedule(instance, now, [("toCreate", "to_create"), ("creating", "creating")], spot)
            instance.phases.append(Phase("pulling", t, spot))
            if not self.faults.config.stuck_in_pulling:
                pulled = t + self._pull_seconds(instance, t)
                self._pulled(instance, pulled)
                self._run(instance, pulled, "app_boot_after_create")
            return self._saved(instance)

    def start(self, instance_id: str) -> EmulatedInstance:
        """Start an exited instance on the node it ran on, where its image still is: no `pulling`, only
        `toStart` and `starting`. Refused for capacity when its GPUs are taken, or the control API says so."""
        with self._lock:
            now = self.now()
            instance = self._visible(instance_id, now)
            if instance.status_at(now) != "exited":
                raise invalid_state_change()
            if instance.kind == "gpu":
                self._require_capacity(
                    instance.cluster_id, instance.product_id, instance.gpu_num, now, spot=instance.billing_mode == SPOT
                )
            if self._take_start_refusal(instance.id):
                raise no_capacity_to_start()
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
