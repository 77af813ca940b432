"""Request validation with Novita's rules (reference §4.4, §6.5), raising VALIDATOR_PARAM errors."""

from __future__ import annotations

import json
from typing import Any

from novita_gpu.emulator.catalog import MONTHLY, ON_DEMAND, SPOT
from novita_gpu.emulator.errors import EmulatedError, invalid_param
from novita_gpu.emulator.instance import STATUSES
from novita_gpu.emulator.jobs import JOB_STATES, JOB_TYPES, JobQuery
from novita_gpu.emulator.placement import CreateRequest
from novita_gpu.emulator.world import InstanceQuery

RESERVED_PORTS = frozenset({2222, 2223, 2224})
MAX_PORTS = 15
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10
MAX_NETWORK_STORAGES = 30
DEFAULT_MOUNT_POINT = "/network"


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body; anything else is a CODEC error, as go-kratos answers."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise EmulatedError(400, "CODEC", f"body unmarshal: {exc.__class__.__name__}") from exc
    if not isinstance(body, dict):
        raise EmulatedError(400, "CODEC", "body unmarshal: a JSON object is required")
    return body


def text(body: dict[str, Any], key: str, *, required: bool = False, min_len: int = 0, max_len: int = 255) -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise invalid_param(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise invalid_param(f"{key} must be a string")
    if not min_len <= len(value) <= max_len:
        raise invalid_param(f"{key} must be {min_len}-{max_len} characters")
    return value


def integer(body: dict[str, Any], key: str, *, required: bool = False, default: int = 0) -> int:
    value: object = body.get(key)
    if value is None:
        if required:
            raise invalid_param(f"{key} is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_param(f"{key} must be an integer")
    return value


def query_int(params: dict[str, str], key: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(key, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise invalid_param(f"{key} must be an integer") from exc
    if not low <= value <= high:
        raise invalid_param(f"{key} must be in [{low}, {high}]")
    return value


def query_bool(params: dict[str, str], key: str) -> bool:
    raw = params.get(key)
    if raw is None or raw == "":
        raise invalid_param(f"{key} is required")
    if raw.lower() not in ("true", "false", "1", "0"):
        raise invalid_param(f"{key} must be a boolean")
    return raw.lower() in ("true", "1")


def page(params: dict[str, str]) -> tuple[int, int]:
    """(pageSize, pageNum): size 0/absent means 10, at most 100; pageNum is 1-based and 0 means 1."""
    size = query_int(params, "pageSize", default=0, low=0, high=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    num = max(1, query_int(params, "pageNum", default=1, low=0, high=1_000_000))
    return size, num


def instance_query(params: dict[str, str]) -> InstanceQuery:
    size, num = page(params)
    status = params.get("status", "")
    if status and status not in STATUSES:
        raise invalid_param(f"unknown status {status!r}")
    return InstanceQuery(size, num, params.get("name", ""), params.get("productName", ""), status)


def job_query(params: dict[str, str]) -> JobQuery:
    """`GET /jobs`'s query: pageSize, pageNum, jobId, state, type, startTime, endTime (unix s, 0 = none),
    creators (comma-joined user ids [INF: the reference names the parameter only])."""
    size, num = page(params)
    state, kind = params.get("state", ""), params.get("type", "")
    if state and state not in JOB_STATES:
        raise invalid_param(f"state must be one of {', '.join(JOB_STATES)}")
    if kind and kind not in JOB_TYPES:
        raise invalid_param(f"type must be one of {', '.join(JOB_TYPES)}")
    start = query_int(params, "startTime", default=0, low=0, high=2**40)
    end = query_int(params, "endTime", default=0, low=0, high=2**40)
    creators = frozenset(filter(None, (c.strip() for c in params.get("creators", "").split(","))))
    return JobQuery(size, num, params.get("jobId", ""), state, kind, start, end, creators)


def instance_id(body: dict[str, Any]) -> str:
    return text(body, "instanceId", required=True, min_len=1)


def _ports(body: dict[str, Any]) -> list[tuple[int, str]]:
    raw = text(body, "ports", max_len=4095)
    mappings: list[tuple[int, str]] = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        port_text, _, kind = item.partition("/")
        if not port_text.strip().isdigit() or kind.strip() not in ("http", "tcp"):
            raise invalid_param(f"ports entry {item!r} must look like '8888/http' or '22/tcp'")
        mappings.append((int(port_text), kind.strip()))
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise invalid_param("tools must be a list")
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") not in ("http", "tcp"):
            raise invalid_param("tools entries need a port and a type tcp|http")
        port = tool.get("port")
        if not (isinstance(port, str) and port.isdigit()):
            raise invalid_param("tools[].port must be a numeric string")
        mappings.append((int(port), str(tool["type"])))
    return check_ports(mappings)


def check_ports(mappings: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Novita's port rules: 1-65535 but not 2222-2224, no port twice, at most 15."""
    for port, _ in mappings:
        if not 1 <= port <= 65535 or port in RESERVED_PORTS:
            raise invalid_param(f"port {port} is out of range or reserved (2222-2224)")
    if len({port for port, _ in mappings}) != len(mappings):
        raise invalid_param("ports must not repeat")
    if len(mappings) > MAX_PORTS:
        raise invalid_param(f"at most {MAX_PORTS} ports (ports and tools together)")
    return mappings


def _network_storages(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """`networkStorages: [{Id, mountPoint}]` (capital I, as documented): at most 30, each storage and each
    mount point once [INF]; mountPoint defaults to /network."""
    raw = body.get("networkStorages")
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_NETWORK_STORAGES:
        raise invalid_param(f"networkStorages must be a list of at most {MAX_NETWORK_STORAGES} {{Id, mountPoint}}")
    mounts: list[tuple[str, str]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise invalid_param("networkStorages entries must be {Id, mountPoint}")
        storage_id = item.get("Id")
        if not isinstance(storage_id, str) or not 1 <= len(storage_id) <= 255:
            raise invalid_param("networkStorages[].Id is required (a network storage id)")
        mount = item.get("mountPoint")
        if mount is None or mount == "":
            mount = DEFAULT_MOUNT_POINT
        if not isinstance(mount, str) or len(mount) > 4095:
            raise invalid_param("networkStorages[].mountPoint must be a string of 1-4095 characters")
        mounts.append((storage_id, mount))
    if len({i for i, _ in mounts}) != len(mounts):
        raise invalid_param("networkStorages must not mount a storage twice")
    if len({m for _, m in mounts}) != len(mounts):
        raise invalid_param("networkStorages must not share a mountPoint")
    return tuple(mounts)


def edit_request(body: dict[str, Any]) -> tuple[str, list[tuple[int, str]] | None, int]:
    """`POST /gpu/instance/edit`: (instanceId, ports or None to keep them, expandRootDisk GB)."""
    target = instance_id(body)
    ports: list[tuple[int, str]] | None = None
    raw = body.get("ports")
    if raw is not None:
        if not isinstance(raw, list):
            raise invalid_param("ports must be a list of {port, type}")
        ports = []
        for item in raw:
            port = item.get("port") if isinstance(item, dict) else None
            kind = item.get("type") if isinstance(item, dict) else None
            if isinstance(port, bool) or not isinstance(port, int) or kind not in ("http", "tcp"):
                raise invalid_param("ports entries must be {port: integer, type: tcp|http}")
            ports.append((port, kind))
        check_ports(ports)
    expand = integer(body, "expandRootDisk")
    if expand < 0:
        raise invalid_param("expandRootDisk must be >= 0")
    return target, ports, expand


def _envs(body: dict[str, Any]) -> list[dict[str, str]]:
    envs = body.get("envs") or []
    if not isinstance(envs, list) or len(envs) > 100:
        raise invalid_param("envs must be a list of at most 100 {key, value}")
    result = []
    for env in envs:
        if not isinstance(env, dict):
            raise invalid_param("envs entries must be {key, value}")
        result.append({"key": text(env, "key", max_len=511), "value": text(env, "value", max_len=4095)})
    return result


def _billing(body: dict[str, Any]) -> tuple[str, int]:
    mode = text(body, "billingMode") or ON_DEMAND
    if mode not in (ON_DEMAND, MONTHLY, SPOT):
        raise invalid_param("billingMode must be onDemand, monthly or spot")
    month = integer(body, "month")
    if month < 0:
        raise invalid_param("month must be >= 0")
    if month > 0:
        mode = MONTHLY
    elif mode == MONTHLY:
        raise invalid_param("month must be > 0 for monthly billing")
    renew_month = integer(body, "autoRenewMonth")
    if renew_month and not 1 <= renew_month <= 12:
        raise invalid_param("autoRenewMonth must be in [1, 12]")
    return mode, month


def create_request(body: dict[str, Any], registry_auth_ids: set[str]) -> CreateRequest:
    kind = text(body, "kind", required=True)
    if kind not in ("gpu", "cpu"):
        raise invalid_param("kind must be gpu or cpu")
    gpu_num, rootfs = 0, 0
    if kind == "gpu":
        gpu_num = integer(body, "gpuNum", required=True)
        if not 1 <= gpu_num <= 8:
            raise invalid_param("gpuNum must be in [1, 8]")
        rootfs = integer(body, "rootfsSize", required=True)
        if rootfs > 6144:
            raise invalid_param("rootfsSize must be at most 6144")
        rootfs = max(rootfs, 10)
    image_auth_id = text(body, "imageAuthId")
    if image_auth_id and image_auth_id not in registry_auth_ids:
        raise invalid_param("imageAuthId not found")
    text(body, "imageAuth", max_len=10239)
    network_storages = _network_storages(body)
    if text(body, "networkId"):
        raise EmulatedError(400, "NETWORK_NOT_FOUND", "network not found")
    mode, month = _billing(body)
    return CreateRequest(
        name=text(body, "name"),
        product_id=text(body, "productId", required=True, min_len=1),
        gpu_num=gpu_num,
        rootfs_size=rootfs,
        image_url=text(body, "imageUrl", required=True, min_len=1, max_len=500),
        image_auth_id=image_auth_id,
        ports=_ports(body),
        envs=_envs(body),
        command=text(body, "command", max_len=2047),
        entrypoint=text(body, "entrypoint", max_len=2047),
        cluster_id=text(body, "clusterId"),
        kind=kind,
        billing_mode=mode,
        month=month,
        network_storages=network_storages,
    )
