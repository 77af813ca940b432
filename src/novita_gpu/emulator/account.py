"""The account's objects besides instances: private templates, registry auths, network storages and image
prewarm tasks.

They share the world's lock (the world asks which ones its instances use, and instances mount storages),
and each change is written to the state file at once, as instances are, so a restart of the built-in
emulator loses none of them. The seeded private template and registry auths are account data too: the
first start writes them to the file, and from then on the file, not the seed, says which exist.
"""

from __future__ import annotations

import random
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from novita_gpu.emulator.catalog import Cluster, EmulatedCatalog, RegistryAuth, Template
from novita_gpu.emulator.config import EmulatorConfig, ImageSettings
from novita_gpu.emulator.errors import EmulatedError, invalid_param, storage_too_large
from novita_gpu.emulator.state_file import StateFile

TEMPLATE, REGISTRY_AUTH, NETWORK_STORAGE, PREWARM_TASK, STORAGE_CAPACITY, META = (
    "template",
    "registry_auth",
    "network_storage",
    "prewarm_task",
    "storage_capacity",
    "meta",
)
STORAGE_PRICE_PER_GB = (
    10  # per GB and hour in Novita's price unit (1/100000 USD), as its example: 10 GB -> "100" (docs/costs.md)
)
PREWARM_LIMIT = 10  # tasks per account [INF: the quota's `limit`; Novita's value is not documented]
PREWARM_MAX_IMAGE_GB = 50  # the quota's `perImageSize`
PrewarmState = Literal["Pending", "Running", "Succeeded", "Failed"]
PREWARM_STATES: tuple[PrewarmState, ...] = ("Pending", "Running", "Succeeded", "Failed")

# Asks the world whether a live instance uses an object: ("registry_auth" | "network_storage", id).
InUse = Callable[[str, str], bool]


def not_found(what: str) -> EmulatedError:
    return EmulatedError(400, "RESOURCE_NOT_FOUND", f"{what} not found")


@dataclass
class NetworkStorage:
    id: str  # a UUID, as Novita's
    name: str
    size: int  # GB
    cluster_id: str
    cluster_name: str
    created_at: float
    # The data marker (control API): kept on the storage itself, so it outlives every instance mounting it.
    data: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "storageId": self.id,
            "storageName": self.name,
            "storageSize": self.size,
            "clusterId": self.cluster_id,
            "clusterName": self.cluster_name,
            "price": str(self.size * STORAGE_PRICE_PER_GB),
        }


@dataclass
class PrewarmTask:
    id: str
    image_url: str
    repository_auth: str
    cluster_id: str
    cluster_name: str
    products: list[dict[str, str]]  # [{productId, productName}]
    note: str
    image_size: int  # bytes
    created_at: float
    running_at: float  # Pending until then, Running until done_at, then Succeeded
    done_at: float

    def state_at(self, now: float) -> PrewarmState:
        if now < self.running_at:
            return "Pending"
        return "Running" if now < self.done_at else "Succeeded"

    def json(self, now: float) -> dict[str, Any]:
        state = self.state_at(now)
        return {
            "id": self.id,
            "imageName": image_name(self.image_url),
            "imageUrl": self.image_url,
            "repositoryAuth": self.repository_auth,
            "clusterId": self.cluster_id,
            "clusterName": self.cluster_name,
            "products": [dict(p) for p in self.products],
            "imageSize": str(self.image_size),
            "createTime": str(int(self.created_at)),
            "state": state,
            "completeTime": str(int(self.done_at)) if state == "Succeeded" else "0",
            "note": self.note,
            "reason": [],
        }


def image_name(image_url: str) -> str:
    """The last segment of an image URL without its tag or digest (`ghcr.io/a/b:1.0` -> `b`)."""
    last = image_url.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


@dataclass
class StorageQuery:
    page_size: int
    page_num: int
    name: str = ""
    storage_id: str = ""


@dataclass
class PrewarmQuery:
    page_size: int
    page_num: int
    state: str = ""
    cluster_id: str = ""
    name: str = ""


@dataclass
class PrewarmRequest:
    image_url: str
    repository_auth: str
    cluster_id: str
    product_ids: list[str] = field(default_factory=list)
    note: str = ""


def _page(items: list[Any], size: int, num: int) -> list[Any]:
    start = (num - 1) * size
    return items[start : start + size]


class Account:
    def __init__(
        self,
        catalog: EmulatedCatalog,
        rng: random.Random,
        lock: threading.RLock,
        now: Callable[[], float],
        config: EmulatorConfig,
        in_use: InUse,
        images: Callable[[], ImageSettings] | None = None,
    ) -> None:
        """`images`: the image settings in force (the world's, which the control API changes)."""
        self.catalog = catalog
        self._rng = rng
        self._lock = lock
        self._now = now
        self._config = config
        self._in_use = in_use
        self._images = images or (lambda: config.images)
        self._state: StateFile | None = None
        self._storages: dict[str, NetworkStorage] = {}
        self._prewarm: dict[str, PrewarmTask] = {}
        self._next_template_id = max((int(t.id) for t in catalog.templates if t.id.isdigit()), default=0) + 1

    # --- the state file --------------------------------------------------------------------------

    def attach(self, state: StateFile) -> None:
        """Load the account from `state`, or write the seeded one there if it holds none yet."""
        with self._lock:
            self._state = state
            meta = {m.get("id"): m for m in state.objects(META)}.get("account")
            if meta is None:
                for template in self._own_templates():
                    state.save_object(TEMPLATE, template.id, template.state())
                for auth in self.catalog.registry_auths:
                    state.save_object(REGISTRY_AUTH, auth.id, asdict(auth))
                self._save_meta()
                return
            self._next_template_id = max(self._next_template_id, int(meta.get("nextTemplateId", 0)))
            official = [t for t in self.catalog.templates if not t.mine]
            self.catalog.templates[:] = official + [Template.from_state(b) for b in state.objects(TEMPLATE)]
            self.catalog.registry_auths[:] = [RegistryAuth(**b) for b in state.objects(REGISTRY_AUTH)]
            self._storages = {b["id"]: NetworkStorage(**b) for b in state.objects(NETWORK_STORAGE)}
            self.catalog.storage_capacity.update((b["id"], int(b["gb"])) for b in state.objects(STORAGE_CAPACITY))
            self._prewarm = {b["id"]: PrewarmTask(**b) for b in state.objects(PREWARM_TASK)}

    def _save_meta(self) -> None:
        if self._state is not None:
            self._state.save_object(META, "account", {"id": "account", "nextTemplateId": self._next_template_id})

    def _save(self, kind: str, object_id: str, body: dict[str, Any]) -> None:
        if self._state is not None:
            self._state.save_object(kind, object_id, body)

    def _forget(self, kind: str, object_ids: list[str]) -> None:
        if self._state is not None:
            self._state.delete_objects(kind, object_ids)

    # --- templates -------------------------------------------------------------------------------

    def _own_templates(self) -> list[Template]:
        return [t for t in self.catalog.templates if t.mine]

    def templates(self, channels: set[str] | None, mine: bool | None, name: str, kind: str) -> list[Template]:
        """`mine`: True lists the caller's own, False the public ones, None both (private ones are only
        ever the caller's own); `channels` None means every channel."""
        with self._lock:
            return [
                t
                for t in self.catalog.templates
                if (channels is None or t.channel in channels)
                and name.lower() in t.name.lower()
                and (not kind or kind == "instance")
                and _listed(t, mine)
            ]

    def template(self, template_id: str) -> Template:
        with self._lock:
            found = self.catalog.template(template_id)
            if found is None:
                raise EmulatedError(400, "TEMPLATE_NOT_FOUND", "template not found")
            return found

    def _own_template(self, template_id: str) -> Template:
        found = self.catalog.template(template_id)
        if found is None or not found.mine:  # [INF] another's (or an official) template: not found for you
            raise EmulatedError(400, "TEMPLATE_NOT_FOUND", "template not found")
        return found

    def create_template(self, fields: Template) -> Template:
        with self._lock:
            template = replace(fields, id=str(self._next_template_id), mine=True, created_at=int(self._now()))
            self._next_template_id += 1
            self.catalog.templates.append(template)
            self._save(TEMPLATE, template.id, template.state())
            self._save_meta()
            return template

    def update_template(self, template_id: str, fields: Template) -> Template:
        """Replace every field but the id and creation time ("all parameters must be provided")."""
        with self._lock:
            current = self._own_template(template_id)
            template = replace(fields, id=current.id, mine=True, created_at=current.created_at)
            self.catalog.templates[self.catalog.templates.index(current)] = template
            self._save(TEMPLATE, template.id, template.state())
            return template

    def delete_template(self, template_id: str) -> None:
        with self._lock:
            self.catalog.templates.remove(self._own_template(template_id))
            self._forget(TEMPLATE, [template_id])

    # --- registry auths --------------------------------------------------------------------------

    def registry_auths(self) -> list[RegistryAuth]:
        with self._lock:
            return list(self.catalog.registry_auths)

    def registry_auth_ids(self) -> set[str]:
        with self._lock:
            return {a.id for a in self.catalog.registry_auths}

    def save_registry_auth(self, name: str, username: str, password: str) -> RegistryAuth:
        """Names may repeat (Novita's own example lists two called "test"); each save is a new auth."""
        with self._lock:
            taken = self.registry_auth_ids()
            while (auth_id := _token(self._rng, 32)) in taken:
                continue
            auth = RegistryAuth(auth_id, name, username, password)
            self.catalog.registry_auths.append(auth)
            self._save(REGISTRY_AUTH, auth.id, asdict(auth))
            return auth

    def delete_registry_auth(self, auth_id: str) -> None:
        with self._lock:
            auth = next((a for a in self.catalog.registry_auths if a.id == auth_id), None)
            if auth is None:
                raise not_found("registry auth")
            if self._in_use(REGISTRY_AUTH, auth_id):
                raise EmulatedError(400, "IMAGE_AUTH_IN_USE", "the registry auth is used by an instance")
            self.catalog.registry_auths.remove(auth)
            self._forget(REGISTRY_AUTH, [auth_id])

    # --- network storage -------------------------------------------------------------------------

    def storages(self, query: StorageQuery) -> tuple[list[NetworkStorage], int]:
        """Newest first, as instances are listed [INF]."""
        with self._lock:
            found = [
                s
                for s in reversed(self._storages.values())
                if query.name.lower() in s.name.lower() and (not query.storage_id or s.id == query.storage_id)
            ]
            return _page(found, query.page_size, query.page_num), len(found)

    def storage_sizes(self) -> dict[str, int]:
        with self._lock:
            return {s.id: s.size for s in self._storages.values()}

    def storage(self, storage_id: str) -> NetworkStorage | None:
        with self._lock:
            return self._storages.get(storage_id)

    def storage_capacity(self) -> list[dict[str, object]]:
        """Each cluster that supports network storage: its capacity, what its storages use and what is left (GB)."""
        with self._lock:
            return [self._capacity_of(cluster_id) for cluster_id in sorted(self.catalog.storage_capacity)]

    def set_storage_capacity(self, cluster_id: str, gb: int) -> dict[str, object]:
        """Set the GB of network storage a cluster holds. Below what its storages use already, they stay and
        nothing more fits (as GPU capacity set below the GPUs in use)."""
        with self._lock:
            cluster = self.catalog.cluster(cluster_id)
            if cluster is None or not cluster.support_network_storage:
                raise invalid_param(f"cluster {cluster_id!r} does not exist or supports no network storage")
            if gb < 0:
                raise invalid_param("gb must be >= 0")
            self.catalog.storage_capacity[cluster.id] = gb
            self._save(STORAGE_CAPACITY, cluster.id, {"id": cluster.id, "gb": gb})
            return self._capacity_of(cluster.id)

    def storage_free(self, cluster_id: str) -> int:
        """GB of network storage still free in the cluster (0 where it supports none)."""
        with self._lock:
            total = self.catalog.storage_capacity.get(cluster_id, 0)
            return max(0, total - self._storage_used(cluster_id))

    def _storage_used(self, cluster_id: str) -> int:
        return sum(s.size for s in self._storages.values() if s.cluster_id == cluster_id)

    def _capacity_of(self, cluster_id: str) -> dict[str, object]:
        cluster = self.catalog.cluster(cluster_id)
        total, used = self.catalog.storage_capacity.get(cluster_id, 0), self._storage_used(cluster_id)
        name = cluster.name if cluster is not None else ""
        return {"clusterId": cluster_id, "clusterName": name, "gb": total, "used": used, "free": max(0, total - used)}

    def _require_storage_room(self, cluster: Cluster, more_gb: int) -> None:
        free = self.storage_free(cluster.id)
        if more_gb > free:
            raise storage_too_large(
                f"cluster {cluster.name} has {free} GB of network storage left, {more_gb} GB more were asked for",
                free,
            )

    def storage_data(self, storage_id: str) -> str:
        """The storage's data marker (404 for an unknown storage: this is the control API)."""
        with self._lock:
            return self._marked_storage(storage_id).data

    def write_storage_data(self, storage_id: str, data: str) -> str:
        """Write the storage's data marker, as an instance mounting it would write a file there."""
        with self._lock:
            storage = self._marked_storage(storage_id)
            storage.data = data
            self._save(NETWORK_STORAGE, storage.id, asdict(storage))
            return storage.data

    def _marked_storage(self, storage_id: str) -> NetworkStorage:
        storage = self._storages.get(storage_id)
        if storage is None:
            raise EmulatedError(404, "NETWORK_STORAGE_NOT_FOUND", "network storage not found")
        return storage

    def create_storage(self, cluster_id: str, name: str, size: int) -> NetworkStorage:
        with self._lock:
            cluster = self.catalog.cluster(cluster_id)
            if cluster is None:
                raise invalid_param(f"clusterId {cluster_id!r} not found")
            if not cluster.support_network_storage:
                raise EmulatedError(
                    400,
                    "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT",
                    f"cluster {cluster.name} does not support network storage",
                )
            self._require_storage_room(cluster, size)
            while (storage_id := str(uuid.UUID(int=self._rng.getrandbits(128), version=4))) in self._storages:
                continue
            storage = NetworkStorage(storage_id, name, size, cluster.id, cluster.name, self._now())
            self._storages[storage.id] = storage
            self._save(NETWORK_STORAGE, storage.id, asdict(storage))
            return storage

    def update_storage(self, storage_id: str, name: str, size: int) -> NetworkStorage:
        with self._lock:
            storage = self._storages.get(storage_id)
            if storage is None:
                raise EmulatedError(400, "NETWORK_STORAGE_NOT_FOUND", "network storage not found")
            if size < storage.size:  # Novita's console: a storage only grows
                raise invalid_param(f"storageSize must be at least the current {storage.size} GB")
            cluster = self.catalog.cluster(storage.cluster_id)
            if cluster is not None and size > storage.size:
                self._require_storage_room(cluster, size - storage.size)
            storage.name, storage.size = name, size
            self._save(NETWORK_STORAGE, storage.id, asdict(storage))
            return storage

    def delete_storage(self, storage_id: str) -> None:
        with self._lock:
            if storage_id not in self._storages:
                raise EmulatedError(400, "NETWORK_STORAGE_NOT_FOUND", "network storage not found")
            if self._in_use(NETWORK_STORAGE, storage_id):
                raise EmulatedError(400, "NETWORK_STORAGE_IN_USE", "the network storage is mounted by an instance")
            del self._storages[storage_id]
            self._forget(NETWORK_STORAGE, [storage_id])

    # --- image prewarm ---------------------------------------------------------------------------

    def prewarm_tasks(self, query: PrewarmQuery) -> tuple[list[PrewarmTask], int]:
        with self._lock:
            now, name = self._now(), query.name.lower()
            found = [
                t
                for t in reversed(self._prewarm.values())
                if (not query.state or t.state_at(now) == query.state)
                and (not query.cluster_id or t.cluster_id == query.cluster_id)
                and (name in image_name(t.image_url).lower() or name in t.note.lower())
            ]
            return _page(found, query.page_size, query.page_num), len(found)

    def prewarmed_at(self, cluster_id: str, image_url: str, product_id: str) -> float | None:
        """When the image is (or will be) prewarmed for this product in the cluster: the earliest end of a
        task for it there (one naming products counts for those only); None when no task exists."""
        with self._lock:
            return min(
                (
                    t.done_at
                    for t in self._prewarm.values()
                    if t.cluster_id == cluster_id
                    and t.image_url == image_url
                    and (not t.products or any(p["productId"] == product_id for p in t.products))
                ),
                default=None,
            )

    def prewarm_quota(self) -> dict[str, int]:
        with self._lock:
            return {"total": len(self._prewarm), "limit": PREWARM_LIMIT, "perImageSize": PREWARM_MAX_IMAGE_GB}

    def create_prewarm(self, req: PrewarmRequest) -> PrewarmTask:
        with self._lock:
            if len(self._prewarm) >= PREWARM_LIMIT:
                raise EmulatedError(400, "IMAGE_PREWARM_NUM_LIMIT", f"at most {PREWARM_LIMIT} prewarm tasks")
            cluster = self.catalog.cluster(req.cluster_id)
            if cluster is None:
                raise invalid_param(f"clusterId {req.cluster_id!r} not found")
            if req.repository_auth and req.repository_auth not in self.registry_auth_ids():
                raise invalid_param("repositoryAuth not found")
            products = []
            for product_id in req.product_ids:
                product = self.catalog.product(product_id)
                if product is None or cluster.name not in product.regions:
                    raise invalid_param(f"product {product_id!r} is not offered in cluster {cluster.id!r}")
                products.append({"productId": product.id, "productName": product.name})
            while (task_id := _token(self._rng, 16)) in self._prewarm:
                continue
            now, timings, speed = self._now(), self._config.timings, self._config.speed
            images = self._images()
            size_gb = images.size_gb(req.image_url)
            if size_gb is not None and size_gb > PREWARM_MAX_IMAGE_GB:
                raise EmulatedError(
                    400, "IMAGE_TOO_LARGE", f"images above {PREWARM_MAX_IMAGE_GB} GB cannot be prewarmed ({size_gb} GB)"
                )
            running_at = now + timings.prewarm_pending / speed
            if size_gb is None:  # unsized: a seeded size, and the fixed time
                image_size, pulling = self._rng.randint(1, 20) * 1024**3, timings.prewarm_running / speed
            else:  # the pull a cold create of the image takes
                image_size, pulling = int(size_gb * 1024**3), size_gb / images.pull_gb_per_second / speed
            task = PrewarmTask(
                id=task_id,
                image_url=req.image_url,
                repository_auth=req.repository_auth,
                cluster_id=cluster.id,
                cluster_name=cluster.name,
                products=products,
                note=req.note,
                image_size=image_size,
                created_at=now,
                running_at=running_at,
                done_at=running_at + pulling,
            )
            self._prewarm[task.id] = task
            self._save(PREWARM_TASK, task.id, asdict(task))
            return task

    def edit_prewarm(self, task_id: str, note: str) -> PrewarmTask:
        with self._lock:
            task = self._prewarm.get(task_id)
            if task is None:
                raise not_found("prewarm task")
            task.note = note
            self._save(PREWARM_TASK, task.id, asdict(task))
            return task

    def delete_prewarm(self, task_ids: list[str]) -> None:
        """All or nothing: one unknown id refuses the whole batch [INF]."""
        with self._lock:
            missing = [i for i in task_ids if i not in self._prewarm]
            if missing:
                raise not_found(f"prewarm task {missing[0]!r}")
            for task_id in task_ids:
                self._prewarm.pop(task_id, None)
            self._forget(PREWARM_TASK, list(task_ids))


def _listed(template: Template, mine: bool | None) -> bool:
    if mine is None:
        return template.channel != "private" or template.mine
    return template.mine if mine else template.channel != "private"


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))
