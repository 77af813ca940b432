"""How an instance and its history are shown over the API, in webhooks and in the event stream (env
values never leave the store). Every JSON body built from rows is built here.

Values from the row's JSON columns go through `servable`: a JSON column keeps a lone surrogate as an
escape (rows written before bodies were checked may hold one), which orjson cannot encode, so one such
row answered 500 to every page showing it and its webhooks never left. Text columns cannot
hold one on SQLite or PostgreSQL (the drivers refuse to write it), so they need no pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from novita_gpu.autostop.policy import GpuVerdict, idle_action, runtime_deadline, stops_at
from novita_gpu.instances import recovery
from novita_gpu.instances.lifecycle import Reason, Status
from novita_gpu.kit.json_text import servable
from novita_gpu.kit.tables import Instance, InstanceEvent, OutboxDelivery, WebhookAttempt, WebhookDelivery

_DECIDED = frozenset({Reason.AUTO_STOP, Reason.MAX_RUNTIME})


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _gpu_view(row: Instance) -> dict[str, Any] | None:
    """What the GPU poller last found (null unless the signal is gpu or both). `fallback` says the idle
    decision falls back to lastUsed, and `reason` why: Novita's metrics could not be read."""
    if row.auto_stop_signal not in ("gpu", "both"):
        return None
    check = servable(row.gpu_check) if GpuVerdict.of(row) is not None else None
    check = check or {}
    return {
        "state": check.get("state", "pending"),
        "checkedAt": check.get("checkedAt"),
        "nextCheckAt": iso(row.gpu_check_at),
        "samples": check.get("samples"),
        "avgPercent": check.get("avgPercent"),
        "maxPercent": check.get("maxPercent"),
        "busyAt": check.get("busyAt"),
        "samplesUntil": check.get("until"),
        "fallback": "lastUsed" if check.get("state") == "unavailable" else None,
        "reason": check.get("reason"),
    }


def cost_view(
    accrued_usd: float | None, billed_seconds: float | None, accrued_at: datetime | None, billing_since: datetime | None
) -> dict[str, Any]:
    """An instance's `cost` object: what it has accrued, as of `accruedAt` (the last checkpoint)."""
    return {
        "accruedUsd": round(accrued_usd or 0.0, 6),
        "billedSeconds": round(billed_seconds or 0.0, 3),
        "accruedAt": iso(accrued_at),
        "billingSince": iso(billing_since),
    }


def _pool_view(row: Instance) -> dict[str, Any] | None:
    """The warm pool it belongs to (pools/): `ready`/`stopped` for an idle member, `claimed` once handed out."""
    if row.pool_id is None:
        return None
    return {"poolId": row.pool_id, "name": row.pool_name, "state": row.pool_state}


def instance_view(row: Instance) -> dict[str, Any]:
    return {
        "instanceId": row.id,
        "name": row.name,
        "status": row.status,
        "statusReason": row.status_reason,
        "statusMessage": row.status_message,
        "upstreamStatus": row.upstream_status,
        "novitaInstanceId": row.novita_instance_id,
        "productName": row.product_name,
        "productId": row.product_id,
        "templateId": row.template_id,
        "imageAuthId": row.image_auth_id,
        "networkStorages": servable(
            [{"id": m["id"], "mountPoint": m["mountPoint"]} for m in row.network_storages or ()]
        ),
        "volumes": servable(
            [
                {"volumeId": m["volumeId"], "name": m["volume"], "mountPoint": m["mountPoint"], "storageId": m["id"]}
                for m in row.network_storages or ()
                if "volumeId" in m
            ]
        ),
        "gpuNum": row.gpu_num,
        "rootfsSize": row.rootfs_size,
        "region": row.region,
        "clusterId": row.cluster_id,
        "billingMode": row.billing_mode,
        "pricePerHour": row.price_per_hour,
        "maxPricePerHour": row.max_price_per_hour,
        "webhookUrl": row.webhook_url,
        "connectionDetails": servable(row.connection_details),
        "healthCheck": servable(row.health_check),
        "autoStop": {
            "idleMinutes": row.auto_stop_minutes,
            "signal": row.auto_stop_signal,
            "gpuIdleBelowPercent": row.auto_stop_gpu_below,
            # What ends it: the policy's action, or "delete" for a failed instance Novita cannot stop.
            "action": idle_action(row) or row.auto_stop_action,
            "lastUsedAt": iso(row.last_used_at),
            "stopsAt": iso(stops_at(row)),
            "maxRuntimeEndsAt": iso(runtime_deadline(row)),
            "gpu": _gpu_view(row),
            "lastDecision": servable(row.auto_stop_decision),
        },
        "maxRuntimeMinutes": row.max_runtime_minutes,
        "recovery": servable(recovery.view(row)),
        "pool": _pool_view(row),
        "cost": cost_view(row.accrued_cost_usd, row.billed_seconds, row.accrued_at, row.billing_since),
        "envKeys": servable([env["key"] for env in row.envs]),
        "labels": servable(row.labels),
        "operationId": row.operation_id,
        "createdAt": iso(row.created_at),
        "startedAt": iso(row.started_at),
        "readyAt": iso(row.ready_at),
        "stoppedAt": iso(row.stopped_at),
        "failedAt": iso(row.failed_at),
        "terminatedAt": iso(row.terminated_at),
        "updatedAt": iso(row.updated_at),
    }


def typical_view_json() -> bytes:
    """A ready instance's view as JSON, every field present: the dictionary that cached views are packed
    against (read_cache.py). How well they pack depends on it; what they unpack to does not."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    port = {"port": 8888, "type": "http", "endpoint": "https://0000000000000000-8888.example"}
    row = Instance(
        id="inst_00000000000000000000",
        owner="default",
        name="instance",
        status=Status.READY,
        status_message="The instance is ready: every port answers.",
        upstream_status="running",
        novita_instance_id="0000000000000000",
        product_name="RTX 4090 24GB",
        product_id="product",
        template_id="pytorch-jupyter",
        network_storages=[],
        gpu_num=1,
        rootfs_size=60,
        region="US-01",
        cluster_id="cluster",
        billing_mode="onDemand",
        price_per_hour=0.35,
        connection_details={"ports": [port]},
        auto_stop_minutes=60,
        auto_stop_signal="lastUsed",
        auto_stop_action="stop",
        max_runtime_minutes=0,
        accrued_cost_usd=0.0,
        billed_seconds=0.0,
        billing_since=at,
        envs=[],
        labels={},
        operation_id="op_0000000000000000",
        created_at=at,
        started_at=at,
        ready_at=at,
        updated_at=at,
    )
    return orjson.dumps(instance_view(row))


def webhook_data(row: Instance) -> dict[str, Any]:
    """The `data` object of a webhook: what a receiver needs without calling back."""
    return {
        "connectionDetails": servable(row.connection_details),
        "statusReason": row.status_reason,
        "statusMessage": row.status_message,
        "upstreamStatus": row.upstream_status,
        "novitaInstanceId": row.novita_instance_id,
        "productName": row.product_name,
        "region": row.region,
        "pricePerHour": row.price_per_hour,
        "healthCheck": servable(row.health_check),
        "labels": servable(row.labels),
        # Why an auto-stop (or max runtime) ended it: the rule that fired and its figures; null otherwise.
        "autoStopDecision": servable(row.auto_stop_decision) if row.status_reason in _DECIDED else None,
    }


def event_payload(row: Instance, previous: str | None, at: datetime, event: str | None = None) -> dict[str, Any]:
    """The body of a status change's webhook and stream event: `row` as it is just after the change. `event`
    names one that is not a status change (`instance.reclaim_notice`) or says more (`instance.reclaimed`);
    during a spot recovery it says so (`recovered: true` and the attempt)."""
    payload = _event(row, str(Status(row.status)), previous, at, webhook_data(row))
    if event is not None:
        payload["event"] = event
    return {**payload, **recovery.event_fields(row)}


def rebuilt_event_payload(
    row: Instance, to: str, previous: str | None, at: datetime, reason: str | None, message: str | None
) -> dict[str, Any]:
    """The body of an event stored without one (written before migration 0004): rebuilt from the event's
    columns and the instance row as it is today."""
    return _event(row, to, previous, at, {**webhook_data(row), "statusReason": reason, "statusMessage": message})


def _event(row: Instance, to: str, previous: str | None, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": f"instance.{to}",
        "instanceId": row.id,
        "name": row.name,
        "status": to,
        "previousStatus": previous,
        "timestamp": iso(at),
        "data": data,
    }


def delivery_view(delivery: OutboxDelivery) -> dict[str, Any]:
    """One webhook delivery as the API shows it (an instance's history, a key's account events)."""
    return {
        "deliveryId": delivery.id,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "deliveredAt": iso(delivery.delivered_at),
    }


def history_view(
    instance_id: str,
    events: list[InstanceEvent],
    deliveries: list[WebhookDelivery],
    attempts: list[WebhookAttempt],
) -> dict[str, Any]:
    """An instance's status changes, oldest first, each with its webhook deliveries and their attempts."""
    attempts_by_delivery: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        attempts_by_delivery.setdefault(attempt.delivery_id, []).append(
            {
                "at": iso(attempt.attempted_at),
                "statusCode": attempt.status_code,
                "error": attempt.error,
                "durationMs": round(attempt.duration_ms, 1),
            }
        )
    deliveries_by_event: dict[int, list[dict[str, Any]]] = {}
    for delivery in deliveries:
        deliveries_by_event.setdefault(delivery.event_id, []).append(
            {
                **delivery_view(delivery),
                "nextAttemptAt": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
                "history": attempts_by_delivery.get(delivery.id, []),
            }
        )
    return {
        "instanceId": instance_id,
        "events": [
            {
                "id": e.id,
                "event": (e.payload or {}).get("event") or f"instance.{e.to_status}",
                "at": iso(e.created_at),
                "from": e.from_status,
                "to": e.to_status,
                "reason": e.reason,
                "message": e.message,
                "webhooks": deliveries_by_event.get(e.id, []),
            }
            for e in events
        ],
    }
