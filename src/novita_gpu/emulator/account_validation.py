"""Validation of the account endpoints' bodies and queries (templates, registry auths, network storage,
image prewarm), with Novita's documented limits; anything else refused is marked [INF] in docs/emulator.md."""

from __future__ import annotations

import re
from typing import Any

from novita_gpu.emulator.account import PREWARM_STATES, PrewarmQuery, PrewarmRequest, StorageQuery
from novita_gpu.emulator.catalog import Template
from novita_gpu.emulator.errors import invalid_param, storage_too_large
from novita_gpu.emulator.validation import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    RESERVED_PORTS,
    integer,
    query_int,
    text,
)

TEMPLATE_CHANNELS = frozenset({"official", "community", "private"})
MAX_TEMPLATE_GROUP_PORTS = 10
MAX_TEMPLATE_PORTS = 15  # [INF] the instance limit: a template's ports all become the instance's
MIN_STORAGE_GB = 10  # Novita's MCP server: "at least 10 GB"
MAX_STORAGE_GB = 10_240  # [INF] larger: NETWORK_STORAGE_TOO_LARGE
CUDA_VERSION = re.compile(r"^\d+(\.\d+)*$")


def optional_bool(params: dict[str, str], key: str) -> bool | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false", "1", "0"):
        raise invalid_param(f"{key} must be a boolean")
    return raw.lower() in ("true", "1")


def channels(params: dict[str, str]) -> set[str] | None:
    """`channel`, one or comma-joined; absent means every channel (the reference marks it required, yet its
    own example and Novita's MCP server send none, so it is not required here)."""
    wanted = {c.strip() for c in params.get("channel", "").split(",") if c.strip()}
    if not wanted:
        return None
    if not wanted <= TEMPLATE_CHANNELS:
        raise invalid_param("channel must be official, community or private")
    return wanted


def paged(params: dict[str, str], num_key: str) -> tuple[int, int]:
    """(pageSize, page number) where the page number is called `num_key` (pageNo, page, ...)."""
    size = query_int(params, "pageSize", default=0, low=0, high=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    num = max(1, query_int(params, num_key, default=1, low=0, high=1_000_000))
    return size, num


# --- templates -----------------------------------------------------------------------------------


def _template_ports(raw: object) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid_param("template.ports must be a list of {type, ports}")
    groups: list[tuple[str, tuple[int, ...]]] = []
    for group in raw:
        kind = group.get("type") if isinstance(group, dict) else None
        ports = group.get("ports") if isinstance(group, dict) else None
        if kind not in ("http", "tcp") or not isinstance(ports, list):
            raise invalid_param("template.ports entries must be {type: http|tcp, ports: [integer]}")
        if len(ports) > MAX_TEMPLATE_GROUP_PORTS:
            raise invalid_param(f"template.ports[].ports holds at most {MAX_TEMPLATE_GROUP_PORTS} ports")
        for port in ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise invalid_param("template ports must be integers in [1, 65535]")
            if port in RESERVED_PORTS:
                raise invalid_param(f"port {port} is reserved (2222-2224)")
        groups.append((str(kind), tuple(ports)))
    every = [port for _, ports in groups for port in ports]
    if len(set(every)) != len(every):
        raise invalid_param("template ports must not repeat")
    if len(every) > MAX_TEMPLATE_PORTS:
        raise invalid_param(f"a template exposes at most {MAX_TEMPLATE_PORTS} ports")
    return tuple(groups)


def _template_envs(raw: object) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 100:
        raise invalid_param("template.envs must be a list of at most 100 {key, value}")
    envs: list[tuple[str, str]] = []
    for env in raw:
        if not isinstance(env, dict):
            raise invalid_param("template.envs entries must be {key, value}")
        envs.append((text(env, "key", max_len=511), text(env, "value", max_len=4095)))
    return tuple(envs)


def template_object(body: dict[str, Any]) -> dict[str, Any]:
    template = body.get("template")
    if not isinstance(template, dict):
        raise invalid_param("template is required (an object)")
    return template


def template_fields(template: dict[str, Any], registry_auth_ids: set[str]) -> Template:
    """A private template from a create or update body's `template` (its id and creation time are set by
    the account). Fields the reference does not take on create (`tools`, `recommendCards`) are ignored."""
    kind = text(template, "type", required=True)
    if kind != "instance":
        raise invalid_param("template.type must be instance")
    if text(template, "channel", required=True) != "private":
        raise invalid_param("template.channel must be private (only private templates can be written)")
    rootfs = integer(template, "rootfsSize", required=True)
    if not 0 < rootfs <= 6144:
        raise invalid_param("template.rootfsSize must be in [1, 6144]")
    image_auth = text(template, "imageAuth", max_len=255)
    if image_auth and image_auth not in registry_auth_ids:
        raise invalid_param("template.imageAuth is not a registry auth id")
    cuda = text(template, "minCudaVersion", max_len=255)
    if cuda and not CUDA_VERSION.match(cuda):
        raise invalid_param("template.minCudaVersion must look like 11.8 or 12.4")
    return Template(
        id="",
        name=text(template, "name", required=True, min_len=1, max_len=255),
        channel="private",
        image=text(template, "image", required=True, min_len=1, max_len=500),
        rootfs_size=rootfs,
        ports=_template_ports(template.get("ports")),
        envs=_template_envs(template.get("envs")),
        start_command=text(template, "startCommand", max_len=2047),
        readme=text(template, "readme", max_len=102_400),
        mine=True,
        min_cuda_version=cuda,
        image_auth=image_auth,
        entrypoint=text(template, "entrypoint", max_len=2047),
    )


def template_id(body: dict[str, Any], key: str = "templateId") -> str:
    """A template id: a string as documented; a JSON number is read as its digits [INF]."""
    value = body.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return text(body, key, required=True, min_len=1)


# --- registry auths and network storage ----------------------------------------------------------


def registry_auth(body: dict[str, Any]) -> tuple[str, str, str]:
    """(name, username, password), all required; limits from Novita's MCP server."""
    return (
        text(body, "name", required=True, min_len=1, max_len=255),
        text(body, "username", required=True, min_len=1, max_len=511),
        text(body, "password", required=True, min_len=1, max_len=1024),
    )


def storage_size(body: dict[str, Any]) -> int:
    """`storageSize` in GB: an integer, or its digits as a string (the update page types it as a string
    while Novita's console and MCP server send a number)."""
    value: object = body.get("storageSize")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is None:
        raise invalid_param("storageSize is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_param("storageSize must be an integer (GB)")
    if value < MIN_STORAGE_GB:
        raise invalid_param(f"storageSize must be at least {MIN_STORAGE_GB} GB")
    if value > MAX_STORAGE_GB:
        raise storage_too_large(f"storageSize must be at most {MAX_STORAGE_GB} GB", MAX_STORAGE_GB)
    return value


def storage_name(body: dict[str, Any]) -> str:
    return text(body, "storageName", required=True, min_len=1, max_len=255)


def storage_query(params: dict[str, str]) -> StorageQuery:
    size, num = paged(params, "pageNo")
    return StorageQuery(size, num, params.get("storageName", ""), params.get("storageId", ""))


def storage_id(body: dict[str, Any]) -> str:
    """`storageId`, as documented and as Novita's console sends it; Novita's CLI sends `id`, taken too."""
    if body.get("storageId") is None and isinstance(body.get("id"), str):
        return text(body, "id", required=True, min_len=1)
    return text(body, "storageId", required=True, min_len=1)


# --- image prewarm -------------------------------------------------------------------------------


def prewarm_query(params: dict[str, str]) -> PrewarmQuery:
    size, num = paged(params, "page")
    state = params.get("state", "")
    if state and state not in PREWARM_STATES:
        raise invalid_param("state must be Pending, Running, Succeeded or Failed")
    return PrewarmQuery(size, num, state, params.get("clusterId", ""), params.get("name", ""))


def prewarm_request(body: dict[str, Any]) -> PrewarmRequest:
    product_ids = body.get("productIds")
    if product_ids is None:
        product_ids = []
    if not isinstance(product_ids, list) or not all(isinstance(p, str) and p for p in product_ids):
        raise invalid_param("productIds must be a list of product ids")
    return PrewarmRequest(
        image_url=text(body, "imageUrl", required=True, min_len=1, max_len=500),
        repository_auth=text(body, "repositoryAuth", max_len=255),
        cluster_id=text(body, "clusterId", required=True, min_len=1),
        product_ids=list(dict.fromkeys(product_ids)),
        note=text(body, "note", max_len=255),
    )


def prewarm_ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise invalid_param("ids must be a non-empty list of prewarm task ids")
    return list(dict.fromkeys(ids))
