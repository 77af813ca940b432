"""Every request of the API as a `Call`: method, path, query, body, headers and whether it may be retried.

The sync and async clients only send these; neither builds a request itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from urllib.parse import quote

from novita_gpu_client.mounts import VolumeMount, volume_mounts

Json = dict[str, Any]
Action = Literal["start", "stop", "delete"]


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    # A list value is sent as the parameter repeated (`label=a=1&label=b=2`).
    params: Mapping[str, str | int | float | Sequence[str]] | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Safe to send again: idempotent, or a create carrying its Idempotency-Key.
    retryable: bool = False
    # Non-2xx statuses whose body is the answer itself (GET /health is 503 with a report when unhealthy).
    accept: frozenset[int] = frozenset()
    # Seconds the server may hold the request open on purpose (long-polls), on top of the client's timeout.
    held_for: float = 0.0

    def request_options(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client.request` / `httpx.AsyncClient.request`."""
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "json": self.body,
            "headers": self.headers,
            "timeout": timeout + self.held_for,
        }


class CreateOptions(TypedDict, total=False):
    """Optional fields of a create; None (or leaving one out) takes the server's default."""

    gpu_num: int | None
    rootfs_size: int | None
    region: str | None
    strict_region: bool | None
    billing_mode: Literal["onDemand", "spot"] | None
    max_price_per_hour: float | None
    webhook_url: str | None
    auto_stop_minutes: int | None
    # The policy as the API takes it: {"idleMinutes", "signal", "gpuIdleBelowPercent", "action"} (docs/autostop.md).
    auto_stop: Mapping[str, Any] | None
    max_runtime_minutes: int | None
    envs: Mapping[str, str] | None
    labels: Mapping[str, str] | None
    health_check_path: str | None
    image_auth_id: str | None
    network_storages: Sequence[Mapping[str, str]] | None  # [{"id": ..., "mountPoint": "/network"}]
    # Volumes by name or id: [{"volume": "datasets", "mountPoint": "/data"}], ("datasets", "/data") or "datasets".
    volumes: Sequence[VolumeMount] | None
    # What a spot reclaim leads to, as the API takes it: {"onReclaim", "maxRecoveries", "fallbackToOnDemand",
    # "keepReclaimed"}, each optional (docs/spot.md).
    recovery: Mapping[str, Any] | None
    # Claim from this warm pool (pools.py) rather than create: product and template must be the pool's, and
    # the spec fields the pool sets (gpu_num, region, volumes, envs, ...) left out.
    pool: str | None


_CREATE_FIELDS = {
    "gpu_num": "gpuNum",
    "rootfs_size": "rootfsSize",
    "region": "region",
    "strict_region": "strictRegion",
    "billing_mode": "billingMode",
    "max_price_per_hour": "maxPricePerHour",
    "webhook_url": "webhookUrl",
    "auto_stop_minutes": "autoStopMinutes",
    "image_auth_id": "imageAuthId",
    "max_runtime_minutes": "maxRuntimeMinutes",
    "pool": "pool",
}


def _segment(value: str) -> str:
    """One path segment: an id can never reach another route ("../sync", "x/start")."""
    return quote(value, safe="")


def _instance(instance_id: str, suffix: str = "") -> str:
    return f"/api/instances/{_segment(instance_id)}{suffix}"


def _given(**values: str | int | None) -> dict[str, str | int]:
    """Query parameters: the values given (None leaves one out, for the server's default)."""
    return {key: value for key, value in values.items() if value is not None}


def _statuses(status: str | Iterable[str]) -> str:
    return status if isinstance(status, str) else ",".join(sorted(status))


def create(
    name: str,
    product_name: str,
    template_id: str | int,
    options: CreateOptions,
    idempotency_key: str | None = None,
) -> Call:
    """A create that is safe to retry: it always carries an Idempotency-Key (a fresh one unless given)."""
    unknown = (
        set(options)
        - set(_CREATE_FIELDS)
        - {"envs", "labels", "health_check_path", "network_storages", "auto_stop", "volumes", "recovery"}
    )
    if unknown:
        raise TypeError(f"unknown create option(s): {', '.join(sorted(unknown))}")
    body: Json = {"name": name, "productName": product_name, "templateId": template_id}
    for option, field_name in _CREATE_FIELDS.items():
        value = options.get(option)
        if value is not None:
            body[field_name] = value
    envs, labels, health_check_path = options.get("envs"), options.get("labels"), options.get("health_check_path")
    if envs is not None:
        body["envs"] = [{"key": k, "value": v} for k, v in envs.items()]
    if labels is not None:
        body["labels"] = dict(labels)
    if health_check_path is not None:
        body["healthCheck"] = {"path": health_check_path}
    auto_stop = options.get("auto_stop")
    if auto_stop is not None:
        body["autoStop"] = dict(auto_stop)
    network_storages = options.get("network_storages")
    if network_storages is not None:
        body["networkStorages"] = [dict(storage) for storage in network_storages]
    if (volumes := options.get("volumes")) is not None:
        body["volumes"] = volume_mounts(volumes)
    if (recovery := options.get("recovery")) is not None:
        body["recovery"] = dict(recovery)
    key = idempotency_key or f"sdk-{uuid.uuid4()}"
    return Call("POST", "/api/instances", body=body, headers={"Idempotency-Key": key}, retryable=True)


def get(instance_id: str) -> Call:
    return Call("GET", _instance(instance_id), retryable=True)


def wait(instance_id: str, status: str | Iterable[str], timeout: float) -> Call:
    """One long-poll: the server answers once the instance is in `status` (or failed/terminated), or at timeout."""
    params: dict[str, str | float] = {"waitFor": _statuses(status), "timeout": round(timeout, 3)}
    return Call("GET", _instance(instance_id), params=params, retryable=True, held_for=timeout)


def list_page(
    status: str | Iterable[str] | None = None,
    name: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Call:
    """One page; `labels` keeps only instances carrying every one of these labels."""
    statuses = None if status is None else _statuses(status)
    params: dict[str, str | int | Sequence[str]] = {**_given(status=statuses, name=name, limit=limit, cursor=cursor)}
    if labels:
        params["label"] = [f"{key}={value}" for key, value in labels.items()]
    return Call("GET", "/api/instances", params=params, retryable=True)


def start(instance_id: str, webhook_url: str | None = None, health_check_path: str | None = None) -> Call:
    body = _start_options(webhook_url, health_check_path)
    # Repeating a start is harmless: the server answers 200 with the current status.
    return Call("POST", _instance(instance_id, "/start"), body=body or None, retryable=True)


def start_by_name(name: str, webhook_url: str | None = None, health_check_path: str | None = None) -> Call:
    body = {"instanceName": name, **_start_options(webhook_url, health_check_path)}
    return Call("POST", "/api/instances/start", body=body, retryable=True)


def _start_options(webhook_url: str | None, health_check_path: str | None) -> Json:
    body: Json = {}
    if webhook_url is not None:
        body["webhookUrl"] = webhook_url
    if health_check_path is not None:
        body["healthCheck"] = {"path": health_check_path}
    return body


def stop(instance_id: str, return_to_pool: bool = False) -> Call:
    """With `return_to_pool`, a claimed pool instance goes back to its pool (a stopped member) if the pool
    has room, else it is deleted; other instances just stop."""
    body = {"returnToPool": True} if return_to_pool else None
    return Call("POST", _instance(instance_id, "/stop"), body=body, retryable=True)


def delete(instance_id: str) -> Call:
    return Call("DELETE", _instance(instance_id), retryable=True)


def by_name(action: Literal["stop", "delete"], name: str, return_to_pool: bool = False) -> Call:
    """POST /api/instances/{stop,delete} with `{"instanceName": name}` (repeats answer 200, so retryable);
    a stop may say `returnToPool` (as `stop`)."""
    body: Json = {"instanceName": name}
    if return_to_pool:
        body["returnToPool"] = True
    return Call("POST", f"/api/instances/{action}", body=body, retryable=True)


def touch(instance_id: str) -> Call:
    return Call("PUT", _instance(instance_id, "/last-used"), retryable=True)


def events(instance_id: str) -> Call:
    return Call("GET", _instance(instance_id, "/events"), retryable=True)


def sync() -> Call:
    return Call("POST", "/api/instances/sync")


def autostop_stats() -> Call:
    return Call("GET", "/api/instances/auto-stop/stats", retryable=True)


def autostop_trigger(dry_run: bool) -> Call:
    return Call("POST", "/api/instances/auto-stop/trigger", body={"dryRun": dry_run}, retryable=dry_run)


def costs(start: str | None = None, end: str | None = None, group_by: str | None = None) -> Call:
    """GET /api/costs: `start`/`end` ISO 8601 (default: this month so far), `group_by` product, apiKey or
    label:<key>."""
    return Call("GET", "/api/costs", params=_given(**{"from": start, "to": end, "groupBy": group_by}), retryable=True)


def budget(api_key: str | None = None) -> Call:
    return Call("GET", "/api/budget", params=_given(apiKey=api_key), retryable=True)


def set_budget(monthly_limit_usd: float, on_exceeded: str | None, webhook_url: str | None, api_key: str | None) -> Call:
    body: Json = {"monthlyLimitUsd": monthly_limit_usd}
    if on_exceeded is not None:
        body["onExceeded"] = on_exceeded
    if webhook_url is not None:
        body["webhookUrl"] = webhook_url
    return Call("PUT", "/api/budget", params=_given(apiKey=api_key), body=body, retryable=True)


def clear_budget(api_key: str | None = None) -> Call:
    return Call("DELETE", "/api/budget", params=_given(apiKey=api_key), retryable=True)


def budget_events(api_key: str | None = None) -> Call:
    return Call("GET", "/api/budget/events", params=_given(apiKey=api_key), retryable=True)


def products(
    product_name: str | None = None, billing_mode: Literal["onDemand", "spot"] | None = None, gpu_num: int | None = None
) -> Call:
    params = _given(productName=product_name, billingMode=billing_mode, gpuNum=gpu_num)
    return Call("GET", "/api/products", params=params, retryable=True)


def templates(name: str | None = None) -> Call:
    return Call("GET", "/api/templates", params={"name": name} if name else None, retryable=True)


def health() -> Call:
    return Call("GET", "/health", retryable=True, accept=frozenset({503}))


def metrics() -> Call:
    return Call("GET", "/api/metrics", retryable=True)


def cache_stats() -> Call:
    return Call("GET", "/api/cache/stats", retryable=True)


def clear_cache(cache_name: str | None = None) -> Call:
    body = {"cacheName": cache_name} if cache_name is not None else {}
    return Call("POST", "/api/cache/clear", body=body, retryable=True)
