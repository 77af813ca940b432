"""Instances as Novita shapes them: strings where Novita sends strings, `endpoint` only in get."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from novita_gpu.emulator.instance import EmulatedInstance, PortMapping

JUPYTER_PORT = 8888
SSH_PORT = 22
TCP_HOST = "127.0.0.1"


def _unix(t: float | None) -> str:
    return str(int(t)) if t is not None else "0"


def port_url(base_url: str, instance_id: str, port: int) -> str:
    return f"{base_url.rstrip('/')}/_instances/{instance_id}/{port}/"


def _endpoint(base_url: str, instance: EmulatedInstance, mapping: PortMapping) -> str:
    if mapping.type == "http":
        return port_url(base_url, instance.id, mapping.port)
    return f"{TCP_HOST}:{mapping.host_port}"


def volume_mounts(instance: EmulatedInstance, storage_sizes: Mapping[str, int]) -> list[dict[str, Any]]:
    """Its network storage mounts as `volumeMounts` items; `size` is a string on both list and get [INF:
    the list page types it a string, the get page a number; one server struct cannot do both]."""
    return [
        {"type": "network", "size": str(storage_sizes.get(m["id"], 0)), "id": m["id"], "mountPath": m["mountPoint"]}
        for m in instance.network_storages
    ]


def instance_summary(instance: EmulatedInstance, now: float, storage_sizes: Mapping[str, int]) -> dict[str, Any]:
    """A list item (§4.5)."""
    phase = instance.phase_at(now)
    reclaim = instance.spot_reclaim_time(now)
    return {
        "id": instance.id,
        "name": instance.name,
        "clusterId": instance.cluster_id,
        "clusterName": instance.cluster_name,
        "status": phase.status,
        "imageUrl": instance.image_url,
        "imageAuthId": instance.image_auth_id,
        "command": instance.command,
        "entrypoint": instance.entrypoint,
        "cpuNum": str(instance.cpu_num),
        "memory": str(instance.memory),
        "gpuNum": str(instance.gpu_num),
        "portMappings": [{"port": m.port, "type": m.type} for m in instance.ports],
        "productId": instance.product_id,
        "productName": instance.product_name,
        "rootfsSize": instance.rootfs_size,
        "volumeMounts": volume_mounts(instance, storage_sizes),
        "statusError": {"state": "", "message": ""},
        "envs": [dict(env) for env in instance.envs],
        "kind": instance.kind,
        "billingMode": instance.billing_mode,
        "endTime": instance.end_time,
        "spotStatus": phase.spot_status,
        "spotReclaimTime": _unix(reclaim),
        "createdAt": _unix(instance.created_at),
        "lastStartedAt": _unix(instance.last_entered("running", now)),
        "lastStoppedAt": _unix(instance.last_entered("exited", now)),
    }


def instance_detail(
    instance: EmulatedInstance,
    now: float,
    base_url: str,
    storage_sizes: Mapping[str, int],
    node_shape: Literal["object", "list"] = "object",
) -> dict[str, Any]:
    """The get answer (§4.6): the list fields plus endpoints and connect components. `node` is one object
    or, with `node_shape="list"`, the reference's array of one (docs/emulator.md)."""
    body = instance_summary(instance, now, storage_sizes)
    up = instance.app_up_at(now)
    body["portMappings"] = [
        {"port": m.port, "endpoint": _endpoint(base_url, instance, m), "type": m.type} for m in instance.ports
    ]
    ssh = next((m for m in instance.ports if m.port == SSH_PORT and m.type == "tcp"), None)
    jupyter = next((m for m in instance.ports if m.port == JUPYTER_PORT and m.type == "http"), None)
    body["connectComponentSSH"] = {
        "sshCommand": f"ssh root@{TCP_HOST} -p {ssh.host_port}" if ssh else "",
        "password": instance.ssh_password if ssh else "",
        "isRunning": up and ssh is not None,
    }
    body["connectComponentJupyter"] = {
        "port": JUPYTER_PORT if jupyter else 0,
        "address": port_url(base_url, instance.id, JUPYTER_PORT) if jupyter else "",
        "isRunning": up and jupyter is not None,
    }
    body["connectComponentWebTerminal"] = {"address": "", "username": "", "password": "", "isRunning": False}
    logs = f"{base_url.rstrip('/')}/_instances/{instance.id}/logs"
    body["connectComponentLog"] = {
        "systemLogAddress": f"{logs}/system",
        "instanceLogAddress": f"{logs}/instance",
        "isRunning": up,
    }
    body["network"] = {"id": "", "ip": ""}
    node = {"maxRootfsSize": instance.max_rootfs}
    body["node"] = [node] if node_shape == "list" else node
    body["jobs"] = []
    body["freeStorageSize"] = 60
    body["keepDataDay"] = 15
    return body


def instance_timeline(instance: EmulatedInstance, now: float) -> dict[str, Any]:
    """The true timeline for the control API (unix float seconds; only what has happened by `now`)."""
    return {
        "id": instance.id,
        "name": instance.name,
        "status": instance.status_at(now),
        "visible": instance.visible_at(now),
        "clusterId": instance.cluster_id,
        "productId": instance.product_id,
        "gpuNum": instance.gpu_num,
        "billingMode": instance.billing_mode,
        "node": instance.node,
        "imageAuthId": instance.image_auth_id,
        "networkStorages": [dict(m) for m in instance.network_storages],
        "rootfsSize": instance.rootfs_size,
        "ports": [{"port": m.port, "type": m.type} for m in instance.ports],
        "createdAt": instance.created_at,
        "runningAt": instance.last_entered("running", now),
        "appBootedAt": instance.last_app_boot(now),
        "appUp": instance.app_up_at(now),
        "stoppedAt": instance.last_entered("exited", now),
        "removedAt": instance.last_entered("removed", now),
        "history": [{"status": p.status, "spotStatus": p.spot_status, "at": p.at} for p in instance.history_at(now)],
    }
