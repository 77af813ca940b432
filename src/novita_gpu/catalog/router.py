"""Read-only catalog browsing: GPU products with prices per region, and templates (cached)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Query

from novita_gpu.catalog.schemas import ProductsAnswer, TemplatesAnswer
from novita_gpu.catalog.service import CatalogError
from novita_gpu.novita import REQUEST_PATIENCE_SECONDS, NovitaError, answer_within
from novita_gpu.novita.errors import unavailable_for
from novita_gpu.web.auth import Owner
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.responses import JSONResponse

if TYPE_CHECKING:
    pass

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get(
    "/products",
    summary="GPU products with their offers (cluster, price per hour, availability)",
    response_model=ProductsAnswer,
)
async def products(
    owner: Owner,
    services: ServicesDep,
    product_name: Annotated[str | None, Query(alias="productName", max_length=120)] = None,
    billing_mode: Annotated[Literal["onDemand", "spot"], Query(alias="billingMode")] = "onDemand",
    gpu_num: Annotated[int, Query(alias="gpuNum", ge=1, le=8)] = 1,
) -> JSONResponse:
    try:
        with answer_within(REQUEST_PATIENCE_SECONDS):
            names = sorted({p.name for p in await services.catalog.products(billing_mode)})
            if product_name is not None:
                names = [n for n in names if product_name.lower() in n.lower()]
            items = []
            for name in names:
                try:
                    offers = await services.catalog.offers(name, billing_mode=billing_mode, gpu_num=gpu_num)
                except CatalogError:
                    continue
                items.append(
                    {
                        "productName": name,
                        "cheapestPricePerHour": min(o.price_per_hour for o in offers),
                        "available": any(o.available for o in offers),
                        "offers": [
                            {
                                "productId": o.product_id,
                                "region": o.cluster_name,
                                "clusterId": o.cluster_id,
                                "pricePerHour": round(o.price_per_hour, 6),
                                "available": o.available,
                            }
                            for o in sorted(offers, key=lambda o: o.price_per_hour)
                        ],
                    }
                )
    except NovitaError as exc:
        raise unavailable_for(services.catalog.host, exc, "read the catalog") from exc
    return JSONResponse({"billingMode": billing_mode, "gpuNum": gpu_num, "products": items})


@router.get(
    "/templates", summary="Templates usable as templateId (by id or exact name)", response_model=TemplatesAnswer
)
async def templates(
    owner: Owner,
    services: ServicesDep,
    name: Annotated[str | None, Query(max_length=255)] = None,
) -> JSONResponse:
    try:
        with answer_within(REQUEST_PATIENCE_SECONDS):
            found = await services.catalog.templates()
    except NovitaError as exc:
        raise unavailable_for(services.catalog.host, exc, "read the catalog") from exc
    if name:
        found = [t for t in found if name.lower() in t.name.lower()]
    return JSONResponse(
        {
            "templates": [
                {
                    "id": t.id,
                    "name": t.name,
                    "image": t.image,
                    "channel": t.channel,
                    "rootfsSize": t.rootfs_size,
                    "ports": [{"type": p.type, "ports": p.ports} for p in t.ports],
                    "envKeys": [e.key for e in t.envs],
                }
                for t in found
            ]
        }
    )
