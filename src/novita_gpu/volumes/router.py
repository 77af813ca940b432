"""HTTP routes of the volumes API. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from novita_gpu.kit.cursor import CURSOR_PATTERN, decode_cursor
from novita_gpu.kit.schemas import NO_NUL
from novita_gpu.volumes.schemas import (
    VOLUME_REF_PATTERN,
    AdoptVolumeIn,
    CreateVolumeIn,
    ResizeVolumeIn,
    UnmanagedStoragesAnswer,
    VolumeAnswer,
    VolumePageAnswer,
)
from novita_gpu.web.auth import CallerDep, Owner
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.errors import ApiError, method_not_allowed
from novita_gpu.web.json_body import StrictJSONRoute
from novita_gpu.web.responses import JSONResponse
from novita_gpu_client.vocabulary import NAME_PATTERN

router = APIRouter(prefix="/api/volumes", tags=["volumes"], route_class=StrictJSONRoute)

VolumeRef = Annotated[str, Path(pattern=VOLUME_REF_PATTERN, description="A volume id (vol_…) or name.")]


# /unmanaged and /adopt own their paths: a verb they do not take is 405, not a volume called "adopt".
for _path, _methods in (("/unmanaged", ["PATCH", "DELETE"]), ("/adopt", ["GET", "PATCH", "DELETE"])):
    router.add_api_route(_path, method_not_allowed, methods=_methods, include_in_schema=False, response_model=None)


def _admin_only(admin: bool, doing: str) -> None:
    if not admin:
        raise ApiError(403, "FORBIDDEN", f"Only an admin key (ADMIN_API_KEYS) may {doing}.")


@router.post("", status_code=201, summary="Create a volume (a Novita network storage)", response_model=VolumeAnswer)
async def create_volume(body: CreateVolumeIn, owner: Owner, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.volumes.create(owner, body), status_code=201)


@router.get("", summary="Your volumes, newest first", response_model=VolumePageAnswer)
async def list_volumes(
    owner: Owner,
    services: ServicesDep,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    region: Annotated[str | None, Query(min_length=1, max_length=120, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
) -> JSONResponse:
    page = await services.volumes.list_page(
        owner, name=name, region=region, limit=limit, cursor=decode_cursor(cursor) if cursor else None
    )
    return JSONResponse({"volumes": page.volumes, "total": page.total, "nextCursor": page.next_cursor})


@router.get(
    "/unmanaged",
    summary="Network storages at Novita that no volume stands for (admin keys)",
    response_model=UnmanagedStoragesAnswer,
)
async def unmanaged_storages(caller: CallerDep, services: ServicesDep) -> JSONResponse:
    _admin_only(caller.admin, "see storages made outside the service")
    return JSONResponse({"storages": await services.volumes.unmanaged()})


@router.post(
    "/adopt",
    status_code=201,
    summary="Adopt a network storage made outside the service as a volume (admin keys)",
    response_model=VolumeAnswer,
)
async def adopt_volume(body: AdoptVolumeIn, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    _admin_only(caller.admin, "adopt storages made outside the service")
    return JSONResponse(await services.volumes.adopt(caller.owner, body), status_code=201)


@router.get("/{volume}", summary="One volume, by id or name", response_model=VolumeAnswer)
async def get_volume(volume: VolumeRef, owner: Owner, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.volumes.get(owner, volume))


@router.patch("/{volume}", summary="Grow a volume (Novita cannot shrink one)", response_model=VolumeAnswer)
async def resize_volume(volume: VolumeRef, body: ResizeVolumeIn, owner: Owner, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.volumes.resize(owner, volume, body.size_gb))


@router.delete(
    "/{volume}",
    status_code=202,
    summary="Delete a volume (409 VOLUME_IN_USE while an instance that is not terminated mounts it)",
    response_model=VolumeAnswer,
    responses={200: {"model": VolumeAnswer, "description": "Already deleted or being deleted"}},
)
async def delete_volume(volume: VolumeRef, owner: Owner, services: ServicesDep) -> JSONResponse:
    view, changed = await services.volumes.delete(owner, volume)
    return JSONResponse(view, status_code=202 if changed else 200)
