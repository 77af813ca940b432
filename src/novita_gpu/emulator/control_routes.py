"""The control API under /_emulator/ (no auth, never faulted): reset, faults, capacity (GPUs and network
storage), reclaim, spot settings, image pulls and nodes, start refusals, utilization, data markers and the
truth about instances."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from novita_gpu.emulator.api_routes import world_of
from novita_gpu.emulator.errors import EmulatedError, invalid_param
from novita_gpu.emulator.novita_shapes import instance_timeline
from novita_gpu.emulator.validation import integer, parse_json_object, text
from novita_gpu.emulator.world import World

router = APIRouter(prefix="/_emulator")
MAX_MARKER_CHARS = 1_000_000  # a marker stands for data, it is not data: a megabyte is plenty


@router.post("/reset")
async def reset(request: Request) -> dict[str, Any]:
    world_of(request).reset()
    return {"ok": True}


@router.get("/faults")
async def get_faults(request: Request) -> dict[str, Any]:
    return world_of(request).faults.config.model_dump()


@router.put("/faults")
async def put_faults(request: Request) -> dict[str, Any]:
    changes = parse_json_object(await request.body())
    try:
        return world_of(request).faults.update(changes).model_dump()
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _invalid(exc: ValidationError) -> EmulatedError:
    return invalid_param("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


@router.get("/spot")
async def get_spot(request: Request) -> dict[str, Any]:
    """`{noticeSeconds, migrateNewId}`: the reclaim notice and whether a migrated instance gets a new id."""
    return world_of(request).spot_settings().model_dump(by_alias=True)


@router.put("/spot")
async def put_spot(request: Request) -> dict[str, Any]:
    changes = parse_json_object(await request.body())
    try:
        return world_of(request).set_spot_settings(changes).model_dump(by_alias=True)
    except ValidationError as exc:
        raise _invalid(exc) from exc


@router.get("/images")
async def get_images(request: Request) -> dict[str, Any]:
    """`{sizesGb, defaultSizeGb, pullGbPerSecond, cachedPullSeconds, nodesPerCluster}`: how long images pull."""
    return world_of(request).image_settings().model_dump(by_alias=True)


@router.put("/images")
async def put_images(request: Request) -> dict[str, Any]:
    """A partial update of the image settings (`sizesGb` replaces the whole map); answers them all."""
    changes = parse_json_object(await request.body())
    try:
        return world_of(request).set_image_settings(changes).model_dump(by_alias=True)
    except ValidationError as exc:
        raise _invalid(exc) from exc


@router.get("/node-images")
async def get_node_images(request: Request) -> dict[str, Any]:
    """`{"nodeImages": [{clusterId, node, imageUrl, readyAt}]}`: the images each node has pulled."""
    return {"nodeImages": world_of(request).node_images()}


@router.get("/start-refusals")
async def get_start_refusals(request: Request) -> dict[str, Any]:
    return world_of(request).start_refusals()


@router.put("/start-refusals")
async def put_start_refusals(request: Request) -> dict[str, Any]:
    """`{instanceIds?, next?}`: refuse the next start of each of these instances, and the next `next` starts
    of any instance, with Novita's `INSUFFICIENT_RESOURCE`; each refusal is used up by the start it refuses.
    Answers `{instanceIds, next}`: the refusals still to come."""
    return world_of(request).set_start_refusals(parse_json_object(await request.body()))


@router.post("/reclaim")
async def reclaim_many(request: Request) -> dict[str, Any]:
    """`{"count": N}` (the N oldest running spot instances, fewer if fewer run) or `{"ids": [...]}` (all
    of them or none): reclaimed now, as the fault `spot_reclaim_per_hour` does. Answers `{"reclaimed": [ids]}`."""
    body = parse_json_object(await request.body())
    if ("count" in body) == ("ids" in body):
        raise invalid_param("give either count or ids")
    world: World = world_of(request)
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise invalid_param("ids must be a list of instance ids")
        return {"reclaimed": world.reclaim_many(ids=ids)}
    count = integer(body, "count", required=True)
    if count < 0:
        raise invalid_param("count must be >= 0")
    return {"reclaimed": world.reclaim_many(count=count)}


@router.get("/capacity")
async def get_capacity(request: Request) -> dict[str, Any]:
    return {"capacity": world_of(request).capacity()}


@router.put("/capacity")
async def put_capacity(request: Request) -> dict[str, Any]:
    body = parse_json_object(await request.body())
    cluster_id = text(body, "clusterId", required=True, min_len=1)
    product_id = text(body, "productId", required=True, min_len=1)
    gpus = integer(body, "gpus", required=True)
    if gpus < 0:
        raise invalid_param("gpus must be >= 0")
    world = world_of(request)
    world.set_capacity(cluster_id, product_id, gpus)
    return {
        "clusterId": cluster_id,
        "productId": product_id,
        "gpus": gpus,
        "free": world.free_gpus(cluster_id, product_id),
    }


@router.get("/storage-capacity")
async def get_storage_capacity(request: Request) -> dict[str, Any]:
    return {"storageCapacity": world_of(request).account.storage_capacity()}


@router.put("/storage-capacity")
async def put_storage_capacity(request: Request) -> dict[str, Any]:
    """`{clusterId, gb}`: the GB of network storage the cluster holds, all its storages together."""
    body = parse_json_object(await request.body())
    cluster_id = text(body, "clusterId", required=True, min_len=1)
    return world_of(request).account.set_storage_capacity(cluster_id, integer(body, "gb", required=True))


@router.post("/instances/{instance_id}/reclaim")
async def reclaim(request: Request, instance_id: str) -> dict[str, Any]:
    world = world_of(request)
    instance = world.reclaim(instance_id)
    return {"instanceId": instance.id, "spotStatus": instance.phase_at(world.now()).spot_status}


@router.put("/instances/{instance_id}/utilization")
async def put_utilization(request: Request, instance_id: str) -> dict[str, Any]:
    """Set the instance's GPU utilization from now on: `{"level": 0-100 | null}` or `{"schedule":
    [{"afterSeconds", "level"}, ...]}` (null: no samples). The metrics endpoint reports it while the
    instance runs, a minute late."""
    return world_of(request).set_utilization(instance_id, parse_json_object(await request.body()))


@router.get("/instances/{instance_id}/utilization")
async def get_utilization(request: Request, instance_id: str) -> dict[str, Any]:
    return world_of(request).utilization(instance_id)


async def _marker(request: Request) -> str:
    """The `bytes` of a data marker body `{"bytes": "<string>"}`."""
    return text(parse_json_object(await request.body()), "bytes", required=True, max_len=MAX_MARKER_CHARS)


@router.put("/instances/{instance_id}/disk")
async def put_disk(request: Request, instance_id: str) -> dict[str, Any]:
    """Write the data marker on the instance's local disk (container disk and /workspace). 409 while it
    has none (stopped or deleted)."""
    return {"bytes": world_of(request).write_disk(instance_id, await _marker(request))}


@router.get("/instances/{instance_id}/disk")
async def get_disk(request: Request, instance_id: str) -> dict[str, Any]:
    """The marker on its local disk: "" on a new instance and once it has stopped since the write."""
    return {"bytes": world_of(request).disk(instance_id)}


@router.get("/instances/{instance_id}/volumes")
async def get_volumes(request: Request, instance_id: str) -> list[dict[str, str]]:
    """`[{storageId, mountPoint, bytes}]`: each mounted network storage's marker, read from the instance."""
    return world_of(request).volumes(instance_id)


@router.put("/volumes/{storage_id}/data")
async def put_volume_data(request: Request, storage_id: str) -> dict[str, Any]:
    """Write a network storage's data marker: kept on the storage, whatever its instances do."""
    return {"bytes": world_of(request).account.write_storage_data(storage_id, await _marker(request))}


@router.get("/volumes/{storage_id}/data")
async def get_volume_data(request: Request, storage_id: str) -> dict[str, Any]:
    return {"bytes": world_of(request).account.storage_data(storage_id)}


@router.get("/instances")
async def instances(request: Request) -> dict[str, Any]:
    world = world_of(request)
    now = world.now()
    return {"now": now, "instances": [instance_timeline(i, now) for i in world.all_instances()]}


@router.get("/instances/{instance_id}")
async def instance(request: Request, instance_id: str) -> dict[str, Any]:
    world = world_of(request)
    found = world.find(instance_id)
    if found is not None:
        return instance_timeline(found, world.now())
    raise EmulatedError(404, "RESOURCE_NOT_FOUND", "instance not found")


@router.get("/stats")
async def stats(request: Request) -> dict[str, int]:
    return world_of(request).stats()


@router.delete("/stats")
async def clear_stats(request: Request) -> dict[str, Any]:
    world_of(request).clear_stats()
    return {"ok": True}
