"""A volume's statuses: `creating → available → deleting → deleted`, or `failed` with a reason."""

from __future__ import annotations

from enum import StrEnum


class VolumeStatus(StrEnum):
    CREATING = "creating"  # recorded; the storage is being made at Novita
    AVAILABLE = "available"  # the storage exists: it can be mounted, grown and deleted
    DELETING = "deleting"  # the storage is being deleted at Novita
    DELETED = "deleted"
    FAILED = "failed"  # Novita refused the create (status_message says why)


# Statuses that hold a name and may hold a storage at Novita.
LIVE = (VolumeStatus.CREATING, VolumeStatus.AVAILABLE, VolumeStatus.DELETING)
# Statuses the volume worker acts on.
PENDING = (VolumeStatus.CREATING, VolumeStatus.DELETING)
MIN_SIZE_GB = 10  # Novita's smallest network storage
MAX_SIZE_GB = 100_000
