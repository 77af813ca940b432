"""The shapes of the catalog endpoints' answers, for the OpenAPI document (a test holds them true)."""

from __future__ import annotations

from pydantic import Field

from novita_gpu.kit.schemas import Answer


class OfferAnswer(Answer):
    product_id: str
    region: str
    cluster_id: str
    price_per_hour: float
    available: bool


class ProductAnswer(Answer):
    product_name: str
    cheapest_price_per_hour: float
    available: bool
    offers: list[OfferAnswer]


class ProductsAnswer(Answer):
    billing_mode: str
    gpu_num: int
    products: list[ProductAnswer]


class TemplatePortsAnswer(Answer):
    type: str = Field(description="http or tcp")
    ports: list[int]


class TemplateAnswer(Answer):
    id: str
    name: str
    image: str
    channel: str
    rootfs_size: int
    ports: list[TemplatePortsAnswer]
    env_keys: list[str]


class TemplatesAnswer(Answer):
    templates: list[TemplateAnswer]
