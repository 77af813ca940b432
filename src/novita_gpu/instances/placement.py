"""Where a new instance may go: the offers of its product that its request allows.

Without volumes, the region asked for (preferred, or the only one with `strictRegion`). With volumes, their
region and no other, even where the product is cheaper elsewhere: a network storage mounts only in its own
cluster (docs/volumes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from novita_gpu.catalog.service import Catalog, CatalogError, Offer
from novita_gpu.instances.schemas import CreateInstanceIn
from novita_gpu.kit.errors import InvalidInput
from novita_gpu.novita import NovitaError
from novita_gpu.volumes.service import Mount


@dataclass(frozen=True)
class Placement:
    offers: list[Offer]  # cheapest first, the preferred region leading
    region: str | None  # the region (cluster id) the record keeps: asked for, or the volumes'
    strict_region: bool


async def place(catalog: Catalog, body: CreateInstanceIn, billing_mode: str, mounts: list[Mount]) -> Placement:
    """The offers allowed; raises CatalogError (as the catalog does) or InvalidInput for volumes."""
    region, strict = body.region, body.strict_region
    if mounts:
        volume = mounts[0]
        if region is not None and (await catalog.resolve_region(region)).id != volume.cluster_id:
            raise InvalidInput(
                "VOLUME_REGION_MISMATCH",
                f"Volume {volume.name!r} is in region {volume.region!r}; the instance must run there.",
                field="region",
            )
        region, strict = volume.cluster_id, True
    try:
        offers = await catalog.offers(
            body.product_name,
            billing_mode=billing_mode,
            gpu_num=body.gpu_num,
            region=region,
            strict_region=strict,
            max_price_per_hour=body.max_price_per_hour,
        )
    except CatalogError as exc:
        if mounts and exc.code == "NO_OFFER_IN_REGION":
            raise await _not_in_volume_region(catalog, body, billing_mode, mounts[0]) from exc
        raise
    return Placement(offers, region, strict)


async def _not_in_volume_region(
    catalog: Catalog, body: CreateInstanceIn, billing_mode: str, mount: Mount
) -> InvalidInput:
    """400 PRODUCT_NOT_IN_VOLUME_REGION, with the regions that do sell the product."""
    try:
        offers = await catalog.offers(body.product_name, billing_mode=billing_mode, gpu_num=body.gpu_num)
        regions = sorted({offer.cluster_name for offer in offers})
    except (CatalogError, NovitaError):
        regions = []
    elsewhere = f"; it is sold in {', '.join(regions)}" if regions else ""
    return InvalidInput(
        "PRODUCT_NOT_IN_VOLUME_REGION",
        f"{body.product_name!r} is not sold in region {mount.region!r}, where volume {mount.name!r} is{elsewhere}.",
        field="productName",
    )
