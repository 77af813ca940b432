"""Where a new instance goes and what it is made of: its cluster (the one asked for, the one its network
storages are in, or one with free GPUs), its size from the product, its id, ports and SSH password.

A mixin of `World` (world.py), kept apart so that the world's module stays readable: it runs under the
world's lock, called by `World.create` (and `_unique_id` by a migration), and declares below what it uses
of the world.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

from novita_gpu.emulator.account import Account
from novita_gpu.emulator.catalog import MONTHLY, SPOT, Cluster, EmulatedCatalog, Product
from novita_gpu.emulator.errors import EmulatedError, invalid_param
from novita_gpu.emulator.instance import EmulatedInstance, PortMapping


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


MONTH_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Sizing:
    gpu_num: int
    cpu_num: int
    memory: int  # GB
    rootfs_size: int  # GB
    max_rootfs: int  # GB, what the node allows the system disk to grow to


class PlacementMixin:
    catalog: EmulatedCatalog
    account: Account
    _rng: random.Random
    _instances: dict[str, EmulatedInstance]

    if TYPE_CHECKING:  # World's

        def now(self) -> float: ...
        def _has_room(self, cluster_id: str, product_id: str, gpus: int, now: float, *, spot: bool = False) -> bool: ...
        def _require_capacity(
            self, cluster_id: str, product_id: str, gpus: int, now: float, *, spot: bool = False
        ) -> None: ...

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
            self._require_capacity(req.cluster_id, product.id, req.gpu_num, now, spot=req.billing_mode == SPOT)
            return req.cluster_id
        if storage_cluster is not None:
            clusters = [c for c in clusters if c.id == storage_cluster.id]
            if not clusters:
                raise _storage_unavailable(storage_cluster, product.id)
        spot = req.billing_mode == SPOT
        candidates = [c.id for c in clusters if self._has_room(c.id, product.id, req.gpu_num, now, spot=spot)]
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
