"""The catalog calls of `NovitaClient`: what can be rented (clusters, products) and the templates to start
it from. Read-only, so every one is retried freely."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypedDict, Unpack

from novita_gpu.novita.errors import NotFound
from novita_gpu.novita.models import Cluster, Product, Template, TemplatePage
from novita_gpu.novita.paging import walk_pages
from novita_gpu.novita.parsing import parse, parse_list
from novita_gpu.novita.transport import Transport

CATALOG_ENDPOINTS: tuple[str, ...] = ("clusters.list", "products.list", "templates.list", "templates.get")


class TemplateQuery(TypedDict, total=False):
    """Which templates `list_templates` and `iter_templates` ask for; unset: `official`, not only mine,
    any name and type."""

    channel: str
    is_my_community: bool
    name: str | None
    type: str | None


class CatalogCalls:
    _transport: Transport

    async def list_clusters(self) -> list[Cluster]:
        body = await self._transport.call("clusters.list", "GET", "/clusters")
        return parse_list(Cluster, body, "data")

    async def list_products(
        self,
        *,
        cluster_id: str | None = None,
        gpu_num: int | None = None,
        product_name: str | None = None,
        min_cpu_per_gpu: int | None = None,
        min_memory_per_gpu: int | None = None,
        min_rootfs_size: int | None = None,
        billing_method: str | None = None,
    ) -> list[Product]:
        params = {
            "clusterId": cluster_id,
            "gpuNum": gpu_num,
            "productName": product_name,
            "minCpuPerGpu": min_cpu_per_gpu,
            "minMemoryPerGpu": min_memory_per_gpu,
            "minRootFSSize": min_rootfs_size,
            "billingMethod": billing_method,
        }
        body = await self._transport.call("products.list", "GET", "/products", params=params)
        return parse_list(Product, body, "data")

    async def list_templates(
        self, *, page_size: int = 50, page_num: int = 1, **query: Unpack[TemplateQuery]
    ) -> TemplatePage:
        params = {
            "channel": query.get("channel", "official"),
            "isMyCommunity": "true" if query.get("is_my_community") else "false",
            "name": query.get("name"),
            "type": query.get("type"),
            "pageSize": page_size,
            "pageNum": page_num,
        }
        body = await self._transport.call("templates.list", "GET", "/templates", params=params)
        return parse(TemplatePage, body)

    def iter_templates(self, *, page_size: int = 50, **query: Unpack[TemplateQuery]) -> AsyncIterator[Template]:
        """Every matching template, page by page."""
        return walk_pages(lambda n: self.list_templates(page_size=page_size, page_num=n, **query), page_size)

    async def get_template(self, template_id: str) -> Template:
        body = await self._transport.call("templates.get", "GET", "/template", params={"templateId": template_id})
        payload = body.get("template") if isinstance(body, dict) else None
        template = parse(Template, payload if isinstance(payload, dict) else body)
        if not template.id:
            raise NotFound(200, "TEMPLATE_NOT_FOUND", f"template {template_id!r} not found")
        return template
