"""The seeded catalog: clusters, GPU and CPU products (with capacity), templates and registry auths.

Prices are integers in 1/100000 USD per GPU-hour, as Novita sends them. One GPU model is offered
under several product ids (one per cluster, each with its own price), as Novita does.
"""

from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass, field
from typing import Any

ON_DEMAND, MONTHLY, SPOT = "onDemand", "monthly", "spot"


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    support_network_storage: bool = True
    support_instance_network: bool = True
    storage_gb: int = 0  # network storage the cluster can hold, all storages together (seeded capacity)


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    regions: tuple[str, ...]  # cluster names
    price: int
    spot_price: int  # 0: no spot offer
    cpu_per_gpu: int
    memory_per_gpu: int
    capacity: int  # GPUs per region
    max_gpus: int = 8
    min_rootfs: int = 10
    max_rootfs: int = 1000

    @property
    def billing_methods(self) -> list[str]:
        return [ON_DEMAND, MONTHLY, SPOT] if self.spot_price else [ON_DEMAND, MONTHLY]

    def json(self, available: bool, free_gpus: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "cpuPerGpu": self.cpu_per_gpu,
            "memoryPerGpu": self.memory_per_gpu,
            "diskPerGpu": 0,
            "availableDeploy": available,
            "minRootFS": self.min_rootfs,
            "maxRootFS": self.max_rootfs,
            "minLocalStorage": 0,
            "maxLocalStorage": 0,
            "regions": list(self.regions),
            "price": self.price,
            "monthlyPrice": [{"price": self.price * 24 * 30 * (100 - 5 * m) // 100 * m, "month": m} for m in (1, 3, 6)],
            "billingMethods": self.billing_methods,
            "spotPrice": str(self.spot_price),
            "inventoryState": _inventory_state(free_gpus),
        }


@dataclass(frozen=True)
class CpuProduct:
    id: str
    name: str
    cpu_num: int
    memory_size: int
    rootfs_size: int
    price: int
    regions: tuple[str, ...]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "cpuNum": self.cpu_num,
            "memorySize": self.memory_size,
            "rootfsSize": self.rootfs_size,
            "localVolumeSize": 0,
            "availableDeploy": True,
            "price": self.price,
        }


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    channel: str  # official | community | private
    image: str
    rootfs_size: int
    ports: tuple[tuple[str, tuple[int, ...]], ...]  # (type, ports)
    envs: tuple[tuple[str, str], ...] = ()
    start_command: str = ""
    readme: str = ""
    mine: bool = False
    created_at: int = 1735689600
    min_cuda_version: str = ""
    recommend: tuple[str, ...] = ()
    image_auth: str = ""  # a registry auth id
    entrypoint: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "name": self.name,
            "readme": self.readme,
            "type": "instance",
            "channel": self.channel,
            "image": self.image,
            "imageAuth": self.image_auth,
            "startCommand": self.start_command,
            "entrypoint": self.entrypoint,
            "rootfsSize": self.rootfs_size,
            "ports": [{"type": kind, "ports": list(ports)} for kind, ports in self.ports],
            "envs": [{"key": k, "value": v} for k, v in self.envs],
            "tools": [],
            "createdAt": str(self.created_at),
            "recommendCards": [{"gpuSpecId": spec, "cardNum": "1"} for spec in self.recommend],
            "minCudaVersion": self.min_cuda_version,
        }

    def state(self) -> dict[str, Any]:
        """Its fields as JSON, for the state file."""
        return asdict(self)

    @classmethod
    def from_state(cls, body: dict[str, Any]) -> Template:
        fields = dict(body)
        fields["ports"] = tuple((kind, tuple(ports)) for kind, ports in body["ports"])
        fields["envs"] = tuple((key, value) for key, value in body["envs"])
        fields["recommend"] = tuple(body["recommend"])
        return cls(**fields)


@dataclass(frozen=True)
class RegistryAuth:
    id: str
    name: str
    username: str
    password: str

    def json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "username": self.username, "password": self.password}


@dataclass
class EmulatedCatalog:
    clusters: list[Cluster]
    products: list[Product]
    cpu_products: list[CpuProduct]
    templates: list[Template]
    registry_auths: list[RegistryAuth]
    capacity: dict[tuple[str, str], int] = field(default_factory=dict)  # (cluster id, product id) -> GPUs
    # cluster id -> GB of network storage it can hold (only clusters that support network storage)
    storage_capacity: dict[str, int] = field(default_factory=dict)

    def cluster(self, cluster_id: str) -> Cluster | None:
        return next((c for c in self.clusters if c.id == cluster_id), None)

    def cluster_by_name(self, name: str) -> Cluster | None:
        return next((c for c in self.clusters if c.name == name), None)

    def product(self, product_id: str) -> Product | None:
        return next((p for p in self.products if p.id == product_id), None)

    def cpu_product(self, product_id: str) -> CpuProduct | None:
        return next((p for p in self.cpu_products if p.id == product_id), None)

    def template(self, template_id: str) -> Template | None:
        return next((t for t in self.templates if t.id == template_id), None)

    def product_clusters(self, product: Product) -> list[Cluster]:
        return [c for name in product.regions if (c := self.cluster_by_name(name)) is not None]


def _inventory_state(free_gpus: int) -> str:
    if free_gpus <= 0:
        return "none"
    if free_gpus < 8:
        return "low"
    return "normal" if free_gpus < 64 else "high"


# Network storage capacities are [INF]: Novita publishes none. They are large enough that tests never
# meet them by accident (a storage is at most 10240 GB) and differ, so that a test can tell them apart;
# a test that wants the limit sets a small one through the control API.
CLUSTERS = [
    Cluster("1", "US-CA-06", storage_gb=20_480),
    Cluster("2", "US-TX-04", storage_gb=10_240),
    Cluster("3", "CA-MTL-01", support_instance_network=False, storage_gb=2_048),
    Cluster("4", "EU-NL-01", storage_gb=5_120),
    Cluster("5", "EU-01", storage_gb=10_240),
    Cluster("6", "AS-SGP-02", support_network_storage=False),
]

PRODUCTS = [
    Product("4090.16c62g", "RTX 4090 24GB", ("US-CA-06",), 35000, 17500, 16, 62, 96),
    Product("4090.16c62g.tx", "RTX 4090 24GB", ("US-TX-04",), 34000, 17000, 16, 62, 96),
    Product("4090.16c62g.eu", "RTX 4090 24GB", ("EU-01",), 31000, 15500, 16, 62, 96),
    Product("4090.16c62g.sg", "RTX 4090 24GB", ("AS-SGP-02",), 29000, 0, 16, 62, 64),
    Product("4090.16c62g.mtl", "RTX 4090 24GB", ("CA-MTL-01",), 30000, 15000, 16, 62, 0),
    Product("3090.16c92g", "RTX 3090 24GB", ("US-CA-06", "US-TX-04"), 21000, 10500, 16, 92, 32),
    Product("5090.16c92g", "RTX 5090 32GB", ("US-CA-06", "EU-01"), 52000, 26000, 16, 92, 32),
    Product("6000ada.16c92g", "RTX 6000 Ada 48GB", ("CA-MTL-01",), 69000, 0, 16, 92, 16),
    Product("l4.8c30g", "L4 24GB", ("EU-NL-01", "AS-SGP-02"), 18000, 9000, 8, 30, 32, 4),
    Product("a6000.10c45g", "RTX A6000 48GB", ("EU-NL-01",), 49000, 0, 10, 45, 16),
    Product("l40s.16c96g", "L40S 48GB", ("US-TX-04", "EU-NL-01"), 86000, 43000, 16, 96, 16),
    Product("a100.16c128g", "A100 SXM 80GB", ("US-CA-06",), 159000, 79500, 16, 128, 16, 8, 10, 2000),
    Product("h100.16c192g", "H100 SXM 80GB", ("US-TX-04", "AS-SGP-02"), 269000, 134500, 16, 192, 16, 8, 10, 2000),
]

CPU_PRODUCTS = [
    CpuProduct("cpu.4c8g", "CPU 4 vCPU 8GB", 4, 8, 20, 3000, ("US-CA-06", "EU-01")),
    CpuProduct("cpu.8c16g", "CPU 8 vCPU 16GB", 8, 16, 40, 6000, ("US-CA-06", "EU-01")),
]

TEMPLATES = [
    Template(
        "101",
        "pytorch-jupyter",
        "official",
        "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
        60,
        (("http", (8888,)), ("tcp", (22,))),
        envs=(("JUPYTER_TOKEN", "novita"), ("PYTHONUNBUFFERED", "1")),
        start_command="jupyter lab --ip=0.0.0.0 --port=8888 --allow-root",
        readme="# PyTorch + Jupyter\nJupyterLab on port 8888, SSH on 22.",
        min_cuda_version="12.4",
        recommend=("4090.18c.60g",),
    ),
    Template(
        "102",
        "ubuntu-ssh",
        "official",
        "ubuntu:22.04",
        20,
        (("tcp", (22,)),),
        readme="# Ubuntu 22.04 with SSH",
    ),
    Template(
        "103",
        "comfyui",
        "community",
        "ghcr.io/comfyanonymous/comfyui:latest",
        80,
        (("http", (8188,)),),
        readme="# ComfyUI on port 8188",
    ),
    Template(
        "104",
        "vllm-openai",
        "official",
        "vllm/vllm-openai:latest",
        100,
        (("http", (8000,)),),
        envs=(("MODEL", "Qwen/Qwen2.5-0.5B-Instruct"),),
        min_cuda_version="12.1",
        readme="# vLLM OpenAI-compatible server on port 8000",
    ),
    Template(
        "205",
        "my-private-app",
        "private",
        "registry.example.com/team/app:1.0",
        40,
        (("http", (8080,)), ("tcp", (22,))),
        mine=True,
        readme="# Our private app",
    ),
]


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def build_catalog(rng: random.Random) -> EmulatedCatalog:
    """A fresh catalog; GPU capacities start at each product's per-region default, network storage
    capacities at each cluster's `storage_gb`."""
    auths = [
        RegistryAuth(_token(rng, 32), "dockerhub-team", "team-bot", _token(rng, 20)),
        RegistryAuth(_token(rng, 32), "ghcr", "octo-ci", _token(rng, 20)),
    ]
    catalog = EmulatedCatalog(list(CLUSTERS), list(PRODUCTS), list(CPU_PRODUCTS), list(TEMPLATES), auths)
    for product in catalog.products:
        for cluster in catalog.product_clusters(product):
            catalog.capacity[(cluster.id, product.id)] = product.capacity
    for cluster in catalog.clusters:
        if cluster.support_network_storage:
            catalog.storage_capacity[cluster.id] = cluster.storage_gb
    return catalog
