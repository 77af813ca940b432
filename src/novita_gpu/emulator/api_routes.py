"""The Novita v1 endpoints under /gpu-instance/openapi/v1 (auth and faults are applied by gateway.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request

from novita_gpu.emulator import account_validation as av
from novita_gpu.emulator import validation as v
from novita_gpu.emulator.errors import EmulatedError, invalid_param
from novita_gpu.emulator.instance import EmulatedInstance
from novita_gpu.emulator.novita_shapes import instance_detail, instance_summary
from novita_gpu.emulator.world import World

router = APIRouter(prefix="/gpu-instance/openapi/v1")


def world_of(request: Request) -> World:
    world: World = request.app.state.world
    return world


def _params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


@router.get("/clusters")
async def clusters(request: Request) -> dict[str, Any]:
    catalog = world_of(request).catalog
    return {
        "data": [
            {
                "id": c.id,
                "name": c.name,
                "availableGpuType": sorted({p.name for p in catalog.products if c.name in p.regions}),
                "supportNetworkStorage": c.support_network_storage,
                "supportInstanceNetwork": c.support_instance_network,
            }
            for c in catalog.clusters
        ]
    }


@router.get("/products")
async def products(request: Request) -> dict[str, Any]:
    world = world_of(request)
    params = _params(request)
    cluster_id = params.get("clusterId", "")
    gpu_num = v.query_int(params, "gpuNum", default=0, low=0, high=8)
    name = params.get("productName", "").lower()
    min_cpu = v.query_int(params, "minCpuPerGpu", default=0, low=0, high=10_000)
    min_mem = v.query_int(params, "minMemoryPerGpu", default=0, low=0, high=100_000)
    min_rootfs = v.query_int(params, "minRootFSSize", default=0, low=0, high=100_000)
    billing = params.get("billingMethod") or "onDemand"
    if billing not in ("onDemand", "monthly", "spot"):
        raise invalid_param("billingMethod must be onDemand, monthly or spot")
    cluster = world.catalog.cluster(cluster_id) if cluster_id else None
    data = []
    for product in world.catalog.products:
        if cluster_id and (cluster is None or cluster.name not in product.regions):
            continue
        if (
            name not in product.name.lower()
            or product.cpu_per_gpu < min_cpu
            or product.memory_per_gpu < min_mem
            or product.max_rootfs < min_rootfs
            or product.max_gpus < gpu_num
            or billing not in product.billing_methods
        ):
            continue
        clusters = [cluster] if cluster else world.catalog.product_clusters(product)
        free = max((world.free_gpus(c.id, product.id) for c in clusters), default=0)
        data.append(product.json(available=free >= max(gpu_num, 1), free_gpus=free))
    return {"data": data}


@router.get("/cpu/products")
async def cpu_products(request: Request) -> dict[str, Any]:
    catalog = world_of(request).catalog
    params = _params(request)
    cluster = catalog.cluster(params.get("clusterId", "")) if params.get("clusterId") else None
    name = params.get("productName", "").lower()
    return {
        "data": [
            p.json()
            for p in catalog.cpu_products
            if name in p.name.lower() and (not params.get("clusterId") or (cluster and cluster.name in p.regions))
        ]
    }


@router.get("/gpu/instances")
async def list_instances(request: Request) -> dict[str, Any]:
    world = world_of(request)
    instances, total = world.list_instances(v.instance_query(_params(request)))
    now, sizes = world.now(), world.account.storage_sizes()
    return {"instances": [instance_summary(i, now, sizes) for i in instances], "total": total}


@router.get("/gpu/instance")
async def get_instance(request: Request) -> dict[str, Any]:
    world = world_of(request)
    instance_id = request.query_params.get("instanceId", "")
    if not instance_id:
        raise invalid_param("instanceId is required")
    instance = world.get(instance_id)
    sizes = world.account.storage_sizes()
    body = instance_detail(instance, world.now(), str(request.base_url), sizes, world.config.node_shape)
    body["jobs"] = world.running_jobs(instance.id)
    return body


@router.post("/gpu/instance/create")
async def create_instance(request: Request) -> dict[str, Any]:
    world = world_of(request)
    body = v.parse_json_object(await request.body())
    if world.faults.take_create_failure("before"):
        raise EmulatedError(500, "UNKNOWN", "unknown error")
    req = v.create_request(body, world.account.registry_auth_ids())
    instance = world.create(req)
    await _until_created(request, world, instance)
    if world.faults.take_create_failure("after"):
        raise EmulatedError(500, "UNKNOWN", "unknown error")
    return {"id": instance.id}


async def _until_created(request: Request, world: World, instance: EmulatedInstance) -> None:
    """Answer a delayed create only once it has completed (on the world's clock, which tests move by
    hand). A caller that hangs up meanwhile does not undo it: the instance still appears on time."""
    # Polled: the world's clock may be a test's, moved by hand from another thread, with nothing to await.
    while not instance.visible_at(world.now()) and not await request.is_disconnected():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def _action_route(action: str) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """`POST /gpu/instance/{action}`: the world's method of that name on the body's `instanceId`."""

    async def act(request: Request) -> dict[str, Any]:
        world = world_of(request)
        instance_id = v.instance_id(v.parse_json_object(await request.body()))
        instance = getattr(world, action)(instance_id)
        return {"instanceId": instance.id, "state": instance.status_at(world.now())}

    act.__name__ = f"{action}_instance"
    return act


for _action in ("start", "stop", "restart", "delete"):
    router.add_api_route(f"/gpu/instance/{_action}", _action_route(_action), methods=["POST"])


@router.post("/gpu/instance/migrate")
async def migrate_instance(request: Request) -> dict[str, Any]:
    """`{instanceId}` of an exited instance -> `{instanceId, state, jobId}`, plus `newInstanceId` when the
    instance comes back under a new id [INF: the answer is undocumented; a third-party client reads
    `newInstanceId` (else `instanceId`) and `message` from it, and Novita's other job-making calls answer
    `{jobId}`]."""
    world = world_of(request)
    instance_id = v.instance_id(v.parse_json_object(await request.body()))
    target, job = world.migrate(instance_id)
    answer: dict[str, Any] = {"instanceId": instance_id, "state": target.status_at(world.now()), "jobId": job.id}
    if target.id != instance_id:
        answer["newInstanceId"] = target.id
    return answer


@router.get("/jobs")
async def jobs(request: Request) -> dict[str, Any]:
    found, total = world_of(request).jobs(v.job_query(_params(request)))
    return {"jobs": found, "total": total}


@router.post("/gpu/instance/edit")
async def edit_instance(request: Request) -> dict[str, Any]:
    """Answers `{}` [INF: the answer is undocumented; Novita's writes answer `{}`]."""
    world = world_of(request)
    instance_id, ports, expand = v.edit_request(v.parse_json_object(await request.body()))
    world.edit(instance_id, ports, expand)
    return {}


@router.get("/templates")
async def templates(request: Request) -> dict[str, Any]:
    """`channel` and `isMyCommunity` are optional: absent, every channel and both scopes (your own and the
    public templates) are listed, as the reference's own example request (with neither) shows. The answer
    carries `pageSize` and `pageNum` (the page served) besides `total`, as the older revision of Novita's
    spec shows and typed clients generated from it require."""
    params = _params(request)
    size, num = v.page(params)
    found = world_of(request).account.templates(
        av.channels(params), av.optional_bool(params, "isMyCommunity"), params.get("name", ""), params.get("type", "")
    )
    start = (num - 1) * size
    return {
        "template": [t.json() for t in found[start : start + size]],
        "total": len(found),
        "pageSize": size,
        "pageNum": num,
    }


@router.get("/template")
async def template(request: Request) -> dict[str, Any]:
    template_id = request.query_params.get("templateId", "")
    if not template_id:
        raise invalid_param("templateId is required")
    return {"template": world_of(request).account.template(template_id).json()}


@router.get("/repository/auths")
async def registry_auths(request: Request) -> dict[str, Any]:
    return {"data": [a.json() for a in world_of(request).account.registry_auths()]}
