"""How a volume is shown: its view in the API, and what Novita's storage price means per hour."""

from __future__ import annotations

from typing import Any

from novita_gpu.kit.clock import iso
from novita_gpu.kit.tables import Volume
from novita_gpu.novita import NetworkStorage

# Novita's prices are in 1/100000 USD per hour, storages' included: 10 GB answers "100", $0.001 an hour,
# $0.073 per GB-month (docs/costs.md says why this reading, not "per month", is the right one).
PRICE_UNIT_USD = 100_000
HOURS_PER_MONTH = 730


def price_per_hour(storage: NetworkStorage) -> float:
    """USD per hour for the whole storage, from Novita's `price`."""
    return storage.price / PRICE_UNIT_USD


def volume_view(row: Volume, mounted_by: list[dict[str, str]]) -> dict[str, Any]:
    per_gb_month = (
        None
        if row.price_per_hour is None or not row.size_gb
        else round(row.price_per_hour * HOURS_PER_MONTH / row.size_gb, 6)
    )
    return {
        "volumeId": row.id,
        "name": row.name,
        "status": row.status,
        "statusMessage": row.status_message,
        "region": row.region,
        "clusterId": row.cluster_id,
        "sizeGb": row.size_gb,
        "storageId": row.storage_id,
        "pricePerHour": row.price_per_hour,
        "pricePerGbMonth": per_gb_month,
        "adopted": row.adopted,
        "mountedBy": mounted_by,
        "createdAt": iso(row.created_at),
        "availableAt": iso(row.available_at),
        "deletedAt": iso(row.deleted_at),
        "updatedAt": iso(row.updated_at),
    }


def unmanaged_view(storage: NetworkStorage) -> dict[str, Any]:
    return {
        "storageId": storage.storage_id,
        "name": storage.storage_name,
        "region": storage.cluster_name,
        "clusterId": storage.cluster_id,
        "sizeGb": storage.storage_size,
        "pricePerHour": price_per_hour(storage),
    }
