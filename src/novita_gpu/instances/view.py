"""How an instance row is shown over the API and in webhooks (env values never leave the store).

Values from the row's JSON columns go through `servable`: a JSON column keeps a lone surrogate as an
escape (rows written before bodies were checked may hold one), which orjson cannot encode, so one such
row answered 500 to every page showing it and its webhooks never left (issue 17). Text columns cannot
hold one on SQLite or PostgreSQL (the drivers refuse to write it), so they need no pass.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from novita_gpu.autostop.policy import idle_action, stops_at
from novita_gpu.instances.models import Instance
from novita_gpu.web.responses import servable


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


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
        "networkStorages": servable(row.network_storages or []),
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
            "lastUsedAt": iso(row.last_used_at),
            "stopsAt": iso(deadline := stops_at(row)),
            # What happens then: "stop", or "delete" for a failed instance Novita cannot stop.
            "action": idle_action(row) if deadline is not None else None,
        },
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
    }
