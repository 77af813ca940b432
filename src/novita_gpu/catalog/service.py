"""Catalog look-ups (cached, so create does not re-query Novita) and offer selection.

An offer is one product id in one cluster at one price. `offers()` lists every offer of a product name
that the request allows, cheapest first, with the preferred region leading; the worker tries them in
order and falls back on INSUFFICIENT_RESOURCE.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TypeVar

from pydantic import TypeAdapter

from novita_gpu.cache.registry import CacheRegistry, LookupHook, NamedCache
from novita_gpu.novita import Cluster, NotFound, NovitaClient, Product, Template

T = TypeVar("T")


class CatalogError(LookupError):
    """A request names something the catalog does not have; `code` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Offer:
    product_id: str
    product_name: str
    cluster_id: str
    cluster_name: str
    price_per_hour: float  # USD for the whole instance (all its GPUs)
    available: bool


def _json_cache(
    name: str, registry: CacheRegistry, ttl: float, adapter: TypeAdapter[T], on_lookup: LookupHook | None
) -> NamedCache[T]:
    cache: NamedCache[T] = NamedCache(
        name,
        registry.backend,
        ttl,
        dump=lambda value: adapter.dump_json(value, by_alias=True),
        load=adapter.validate_json,
        on_lookup=on_lookup,
    )
    registry.register(cache)
    return cache


# An account sees every community template: the error names a few, GET /api/templates has them all.
TEMPLATES_NAMED = 20
_CHANNEL_ORDER = {"private": 0, "official": 1}  # the caller's own first, then Novita's, then community


def unknown_template_message(ref: str, templates: list[Template]) -> str:
    """What a person needs to fix a wrong template: the closest names, then the known ones (as an unknown
    product lists the known products), at most TEMPLATES_NAMED of them."""
    names = sorted({t.name for t in templates if t.name})
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    channel = {t.name: _CHANNEL_ORDER.get(t.channel, 2) for t in templates}
    ranked = close + sorted((n for n in names if n not in close), key=lambda n: (channel.get(n, 2), n))
    shown = ranked[:TEMPLATES_NAMED]
    message = f"No template with id or name {ref!r}."
    if close:
        message += f" Did you mean {' or '.join(repr(n) for n in close)}?"
    if not names:
        return message + " The account has no templates."
    more = len(names) - len(shown)
    listed = ", ".join(shown) + (f" and {more} more (GET /api/templates)" if more else "")
    return f"{message} Known templates: {listed}."


class Catalog:
    def __init__(
        self, client: NovitaClient, caches: CacheRegistry, ttl: float, on_lookup: LookupHook | None = None
    ) -> None:
        self._client = client
        self._clusters = _json_cache("clusters", caches, ttl, TypeAdapter(list[Cluster]), on_lookup)
        self._products = _json_cache("products", caches, ttl, TypeAdapter(list[Product]), on_lookup)
        self._templates = _json_cache("templates", caches, ttl, TypeAdapter(list[Template]), on_lookup)

    @property
    def host(self) -> str:
        """Where the catalog comes from (Novita's host), for messages."""
        return self._client.host

    async def clusters(self) -> list[Cluster]:
        return await self._clusters.get_or_load("all", self._client.list_clusters)

    async def products(self, billing_mode: str = "onDemand") -> list[Product]:
        return await self._products.get_or_load(
            billing_mode, lambda: self._client.list_products(billing_method=billing_mode)
        )

    async def templates(self) -> list[Template]:
        async def load() -> list[Template]:
            found: list[Template] = []
            for channel, mine in (("official", False), ("community", False), ("private", True)):
                found.extend([t async for t in self._client.iter_templates(channel=channel, is_my_community=mine)])
            return list({t.id: t for t in found}.values())

        return await self._templates.get_or_load("all", load)

    async def template(self, ref: str) -> Template:
        """A template by id first, then by exact name."""
        templates = await self.templates()
        for template in templates:
            if template.id == ref:
                return template
        for template in templates:
            if template.name == ref:
                return template
        if ref.isdigit():
            try:
                return await self._client.get_template(ref)
            except NotFound:
                pass
        raise CatalogError("UNKNOWN_TEMPLATE", unknown_template_message(ref, templates))

    async def resolve_region(self, region: str) -> Cluster:
        wanted = region.strip().lower()
        for cluster in await self.clusters():
            if wanted in (cluster.id.lower(), cluster.name.lower()):
                return cluster
        raise CatalogError("UNKNOWN_REGION", f"No region (cluster) named {region!r}.")

    async def offers(
        self,
        product_name: str,
        *,
        billing_mode: str,
        gpu_num: int,
        region: str | None = None,
        strict_region: bool = False,
        max_price_per_hour: float | None = None,
    ) -> list[Offer]:
        """Every allowed offer, preferred region first, then cheapest first. Raises CatalogError when none."""
        clusters = await self.clusters()
        by_name = {c.name: c for c in clusters}
        preferred = await self.resolve_region(region) if region else None
        products = [p for p in await self.products(billing_mode) if p.name.lower() == product_name.lower()]
        if not products:
            known = sorted({p.name for p in await self.products(billing_mode)})
            raise CatalogError(
                "UNKNOWN_PRODUCT",
                f"No GPU product named {product_name!r}. Known products: {', '.join(known)}.",
            )
        offers: list[Offer] = []
        for product in products:
            if billing_mode not in product.billing_methods and product.billing_methods:
                continue
            names = product.regions or [c.name for c in clusters]  # region codes, already normalised
            for name in names:
                cluster = by_name.get(name) or next((c for c in clusters if c.id == name), None)
                if cluster is None:
                    continue
                price = product.price_per_gpu_hour_usd(billing_mode) * gpu_num
                offers.append(
                    Offer(product.id, product.name, cluster.id, cluster.name, price, product.available_deploy)
                )
        if preferred is not None and strict_region:
            offers = [o for o in offers if o.cluster_id == preferred.id]
            if not offers:
                raise CatalogError(
                    "NO_OFFER_IN_REGION", f"{product_name!r} is not offered in region {preferred.name!r}."
                )
        if not offers:
            raise CatalogError("NO_OFFER", f"{product_name!r} is not offered with billing mode {billing_mode!r}.")
        if max_price_per_hour is not None:
            cheapest = min(o.price_per_hour for o in offers)
            offers = [o for o in offers if o.price_per_hour <= max_price_per_hour + 1e-9]
            if not offers:
                raise CatalogError(
                    "NO_OFFER_WITHIN_PRICE",
                    f"The cheapest {product_name!r} costs ${cheapest:.4f}/hour, above maxPricePerHour "
                    f"${max_price_per_hour:.4f}.",
                )
        preferred_id = preferred.id if preferred else None
        offers.sort(key=lambda o: (o.cluster_id != preferred_id, not o.available, o.price_per_hour, o.cluster_id))
        return offers
