"""The v1 endpoints of the account's own objects: template writes, registry auths, network storage and
image prewarm (auth and faults are applied by gateway.py, as for every API path)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from novita_gpu.emulator import account_validation as av
from novita_gpu.emulator.api_routes import world_of
from novita_gpu.emulator.validation import parse_json_object, text

router = APIRouter(prefix="/gpu-instance/openapi/v1")


async def _body(request: Request) -> dict[str, Any]:
    return parse_json_object(await request.body())


# --- templates -----------------------------------------------------------------------------------


@router.post("/template/create")
async def create_template(request: Request) -> dict[str, Any]:
    account = world_of(request).account
    fields = av.template_fields(av.template_object(await _body(request)), account.registry_auth_ids())
    return {"templateId": account.create_template(fields).id}


@router.post("/template/update")
async def update_template(request: Request) -> dict[str, Any]:
    """Body `{"template": {"Id", ...every field, as on create}}`: the template is replaced."""
    account = world_of(request).account
    template = av.template_object(await _body(request))
    template_id = av.template_id(template, "Id")
    fields = av.template_fields(template, account.registry_auth_ids())
    return {"templateId": account.update_template(template_id, fields).id}


@router.post("/template/delete")
async def delete_template(request: Request) -> dict[str, Any]:
    template_id = av.template_id(await _body(request))
    world_of(request).account.delete_template(template_id)
    return {"templateId": template_id}


# --- registry auths ------------------------------------------------------------------------------


@router.post("/repository/auth/save")
async def save_registry_auth(request: Request) -> dict[str, Any]:
    """Answers `{}` as documented: the new id is found by listing."""
    name, username, password = av.registry_auth(await _body(request))
    world_of(request).account.save_registry_auth(name, username, password)
    return {}


@router.post("/repository/auth/delete")
async def delete_registry_auth(request: Request) -> dict[str, Any]:
    body = await _body(request)
    world_of(request).account.delete_registry_auth(text(body, "id", required=True, min_len=1))
    return {}


# --- network storage -----------------------------------------------------------------------------


@router.get("/networkstorages/list")
async def list_network_storages(request: Request) -> dict[str, Any]:
    storages, total = world_of(request).account.storages(av.storage_query(dict(request.query_params)))
    return {"data": [s.json() for s in storages], "total": total}


@router.post("/networkstorage/create")
async def create_network_storage(request: Request) -> str:
    """Answers the new storage's id as a bare JSON string, as the reference shows (`"<string>"`)."""
    body = await _body(request)
    cluster_id = text(body, "clusterId", required=True, min_len=1)
    name, size = av.storage_name(body), av.storage_size(body)
    return world_of(request).account.create_storage(cluster_id, name, size).id


@router.post("/networkstorage/update")
async def update_network_storage(request: Request) -> dict[str, Any]:
    body = await _body(request)
    storage_id = av.storage_id(body)
    world_of(request).account.update_storage(storage_id, av.storage_name(body), av.storage_size(body))
    return {}


@router.post("/networkstorage/delete")
async def delete_network_storage(request: Request) -> dict[str, Any]:
    world_of(request).account.delete_storage(av.storage_id(await _body(request)))
    return {}


# --- image prewarm -------------------------------------------------------------------------------


@router.get("/image/prewarm")
async def list_prewarm(request: Request) -> dict[str, Any]:
    world = world_of(request)
    tasks, total = world.account.prewarm_tasks(av.prewarm_query(dict(request.query_params)))
    now = world.now()
    return {"data": [t.json(now) for t in tasks], "total": total}


@router.get("/image/prewarm/quota")
async def prewarm_quota(request: Request) -> dict[str, int]:
    return world_of(request).account.prewarm_quota()


@router.post("/image/prewarm")
async def create_prewarm(request: Request) -> dict[str, Any]:
    return {"id": world_of(request).account.create_prewarm(av.prewarm_request(await _body(request))).id}


@router.post("/image/prewarm/edit")
async def edit_prewarm(request: Request) -> dict[str, Any]:
    body = await _body(request)
    task_id = text(body, "id", required=True, min_len=1)
    world_of(request).account.edit_prewarm(task_id, text(body, "note", max_len=255))
    return {}


@router.post("/image/prewarm/delete")
async def delete_prewarm(request: Request) -> dict[str, Any]:
    world_of(request).account.delete_prewarm(av.prewarm_ids(await _body(request)))
    return {}
