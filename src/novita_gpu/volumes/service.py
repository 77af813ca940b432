"""The volume use-cases: create, list, get, grow, delete, adopt, and resolve the volumes an instance mounts.

Creates and deletes are recorded here and carried out at Novita by the volume worker (worker.py), like an
instance's: the request is answered at once and a crash never loses or repeats one. A grow is sent to
Novita within the request (it is one call, and Novita's refusal is the user's answer); should the answer
be lost, the worker finds the new size in Novita's list.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.catalog.service import Catalog, CatalogError
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.cursor import encode_cursor
from novita_gpu.kit.db import Database
from novita_gpu.kit.errors import (
    InvalidInput,
    InvalidTransition,
    VolumeInUse,
    VolumeNameTaken,
    VolumeNotFound,
)
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import Instance, InstanceVolume, Volume
from novita_gpu.novita import Cluster, NetworkStorage, NovitaClient, NovitaError, RateLimited
from novita_gpu.novita.client import REQUEST_PATIENCE_SECONDS, answer_within
from novita_gpu.novita.errors import unavailable_for
from novita_gpu.volumes.billing import reprice
from novita_gpu.volumes.lifecycle import LIVE, VolumeStatus
from novita_gpu.volumes.rendering import price_per_hour, unmanaged_view, volume_view
from novita_gpu.volumes.schemas import AdoptVolumeIn, CreateVolumeIn, VolumeMountIn

TERMINATED = "terminated"  # the instance status that no longer holds a volume


@dataclass(frozen=True)
class Mount:
    """A volume an instance mounts, resolved: what Novita is sent and what the instance's view shows."""

    volume_id: str
    name: str
    storage_id: str
    cluster_id: str
    region: str
    mount_point: str

    def stored(self) -> dict[str, str]:
        """The instance row's `network_storages` item (Novita's mount, and which volume it is)."""
        return {"id": self.storage_id, "mountPoint": self.mount_point, "volumeId": self.volume_id, "volume": self.name}


@dataclass(frozen=True)
class VolumePage:
    volumes: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def _is_id(ref: str) -> bool:
    return ref.startswith("vol_")


class VolumeService:
    def __init__(self, db: Database, clock: Clock, catalog: Catalog, client: NovitaClient) -> None:
        self.db = db
        self.clock = clock
        self.catalog = catalog
        self.client = client
        # A create or delete was recorded: the volume worker carries it out now rather than at its next pass.
        self.changed: Signal[str] = Signal()

    # -- reading ---------------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, owner: str, ref: str, *, lock: bool = False) -> Volume:
        """The caller's volume of this id, else its live volume of this name; another key's is not found."""
        where = Volume.id == ref if _is_id(ref) else (Volume.name == ref) & Volume.status.in_(LIVE)
        query = select(Volume).where(where, Volume.owner == owner)
        row = (await session.execute(self.db.locked(query) if lock else query)).scalar_one_or_none()
        if row is None:
            raise VolumeNotFound(ref)
        return row

    async def _mounted_by(self, session: AsyncSession, volume_ids: list[str]) -> dict[str, list[dict[str, str]]]:
        """Per volume, the instances that are not terminated and mount it."""
        found: dict[str, list[dict[str, str]]] = {volume_id: [] for volume_id in volume_ids}
        if not volume_ids:
            return found
        rows = await session.execute(
            select(InstanceVolume.volume_id, Instance.id, Instance.name, InstanceVolume.mount_point)
            .join(Instance, Instance.id == InstanceVolume.instance_id)
            .where(InstanceVolume.volume_id.in_(volume_ids), Instance.status != TERMINATED)
            .order_by(Instance.created_at)
        )
        for volume_id, instance_id, name, mount_point in rows:
            found[volume_id].append({"instanceId": instance_id, "name": name, "mountPoint": mount_point})
        return found

    async def get(self, owner: str, ref: str) -> dict[str, Any]:
        async with self.db.read() as session:
            row = await self._load(session, owner, ref)
            return volume_view(row, (await self._mounted_by(session, [row.id]))[row.id])

    async def list_page(
        self, owner: str, *, name: str | None, region: str | None, limit: int, cursor: tuple[datetime, str] | None
    ) -> VolumePage:
        """Newest first, deleted and failed volumes included (as terminated instances are)."""
        where = [Volume.owner == owner]
        if name:
            where.append(Volume.name == name)
        if region:
            wanted = region.strip().lower()
            where.append((func.lower(Volume.region) == wanted) | (func.lower(Volume.cluster_id) == wanted))
        async with self.db.read() as session:
            total = await session.scalar(select(func.count()).select_from(Volume).where(*where)) or 0
            query = select(Volume).where(*where)
            if cursor is not None:
                created, row_id = cursor
                query = query.where(
                    (Volume.created_at < created) | ((Volume.created_at == created) & (Volume.id < row_id))
                )
            rows = list(
                (
                    await session.execute(query.order_by(Volume.created_at.desc(), Volume.id.desc()).limit(limit + 1))
                ).scalars()
            )
            more, rows = len(rows) > limit, rows[:limit]
            mounts = await self._mounted_by(session, [row.id for row in rows])
        return VolumePage(
            [volume_view(row, mounts[row.id]) for row in rows],
            total,
            encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
        )

    # -- create ----------------------------------------------------------------------------------

    async def _storage_cluster(self, region: str) -> Cluster:
        """The region's cluster, which must support network storage (400 naming those that do)."""
        try:
            with answer_within(REQUEST_PATIENCE_SECONDS):
                cluster = await self.catalog.resolve_region(region)
                clusters = await self.catalog.clusters()
        except CatalogError as exc:
            raise InvalidInput(exc.code, exc.message, field="region") from exc
        except NovitaError as exc:
            raise unavailable_for(self.catalog.host, exc, "look up the regions") from exc
        if not cluster.support_network_storage:
            able = sorted(c.name for c in clusters if c.support_network_storage)
            raise InvalidInput(
                "REGION_WITHOUT_NETWORK_STORAGE",
                f"Region {cluster.name!r} does not support network storage; these do: {', '.join(able) or 'none'}.",
                field="region",
            )
        return cluster

    async def create(self, owner: str, body: CreateVolumeIn) -> dict[str, Any]:
        cluster = await self._storage_cluster(body.region)
        now = self.clock.now()
        volume_id = f"vol_{uuid.uuid4().hex[:20]}"
        row = Volume(
            id=volume_id,
            owner=owner,
            name=body.name,
            upstream_name=f"{body.name.replace('_', '-')}-{volume_id[4:12]}",
            status=VolumeStatus.CREATING,
            status_message="Waiting for Novita to create the storage.",
            cluster_id=cluster.id,
            region=cluster.name,
            size_gb=body.size_gb,
            adopted=False,
            action_attempts=0,
            created_at=now,
            updated_at=now,
            version=1,
        )
        try:
            async with self.db.write() as session:
                session.add(row)
        except IntegrityError as exc:  # the live-name index
            raise VolumeNameTaken(body.name) from exc
        self.changed.emit(volume_id)
        return volume_view(row, [])

    # -- grow ------------------------------------------------------------------------------------

    async def resize(self, owner: str, ref: str, size_gb: int) -> dict[str, Any]:
        async with self.db.read() as session:
            row = await self._load(session, owner, ref)
        if row.status != VolumeStatus.AVAILABLE or row.storage_id is None:
            raise InvalidTransition(f"Volume {row.name!r} is {row.status}; only an available volume can grow.")
        if size_gb < row.size_gb:
            raise InvalidInput(
                "VOLUME_SHRINK",
                f"Volume {row.name!r} has {row.size_gb} GB; Novita cannot shrink a network storage, only grow it.",
                field="sizeGb",
            )
        if size_gb > row.size_gb:
            storage = await self._grow(row.storage_id, row.upstream_name, size_gb)
            async with self.db.write() as session:
                row = await self._load(session, owner, row.id, lock=True)
                now = self.clock.now()
                reprice(session, row, storage.storage_size or size_gb, price_per_hour(storage), now)
                row.updated_at, row.version = now, row.version + 1
        return await self.get(owner, row.id)

    async def _grow(self, storage_id: str, name: str, size_gb: int) -> NetworkStorage:
        """Grow the storage at Novita and read it back (its new price)."""
        try:
            with answer_within(REQUEST_PATIENCE_SECONDS):
                await self.client.update_network_storage(storage_id, name, size_gb)
                page = await self.client.list_network_storages(storage_id=storage_id)
        except NovitaError as exc:
            if 400 <= exc.status < 500 and not isinstance(exc, RateLimited):
                raise InvalidInput(
                    exc.reason or "NOVITA_REFUSED", f"Novita refused: {exc.message}", field="sizeGb"
                ) from exc
            raise unavailable_for(self.client.host, exc, "grow the storage") from exc
        found = [s for s in page.storages if s.storage_id == storage_id]
        return found[0] if found else NetworkStorage(storage_id=storage_id, storage_size=size_gb)

    # -- delete ----------------------------------------------------------------------------------

    async def delete(self, owner: str, ref: str) -> tuple[dict[str, Any], bool]:
        """Record the delete (the worker carries it out); True when it changed anything. 409 while an
        instance that is not terminated mounts the volume."""
        async with self.db.write() as session:
            row = await self._load(session, owner, ref, lock=True)
            if row.status in (VolumeStatus.DELETING, VolumeStatus.DELETED, VolumeStatus.FAILED):
                return volume_view(row, []), False
            users = (await self._mounted_by(session, [row.id]))[row.id]
            if users:
                raise VolumeInUse(row.name, [(u["instanceId"], u["name"]) for u in users])
            now = self.clock.now()
            row.status, row.status_message = VolumeStatus.DELETING, "Waiting for Novita to delete the storage."
            row.next_action_at, row.action_attempts = None, 0
            row.updated_at, row.version = now, row.version + 1
            view = volume_view(row, [])
        self.changed.emit(row.id)
        return view, True

    # -- storages made outside the service --------------------------------------------------------

    async def _unmanaged(self) -> list[NetworkStorage]:
        try:
            with answer_within(REQUEST_PATIENCE_SECONDS):
                storages = [s async for s in self.client.iter_network_storages()]
        except NovitaError as exc:
            raise unavailable_for(self.client.host, exc, "list network storages") from exc
        async with self.db.read() as session:
            known = await session.execute(
                select(Volume.storage_id, Volume.upstream_name, Volume.adopted).where(Volume.status.in_(LIVE))
            )
            ids, names = set(), set()
            for storage_id, upstream_name, adopted in known:
                ids.add(storage_id)
                if not adopted:
                    names.add(upstream_name)
            # Ours though no longer live (deleted, failed): the worker deletes them; not the user's to adopt.
            ours = await session.execute(select(Volume.upstream_name).where(Volume.adopted.is_(False)))
            names.update(name for (name,) in ours)
        return [s for s in storages if s.storage_id not in ids and s.storage_name not in names]

    async def unmanaged(self) -> list[dict[str, Any]]:
        """Network storages at Novita that no volume stands for (made in Novita's console)."""
        return [unmanaged_view(s) for s in await self._unmanaged()]

    async def adopt(self, owner: str, body: AdoptVolumeIn) -> dict[str, Any]:
        storage = next((s for s in await self._unmanaged() if s.storage_id == body.storage_id), None)
        if storage is None:
            raise InvalidInput(
                "UNKNOWN_STORAGE",
                f"No unmanaged network storage {body.storage_id!r} at Novita (GET /api/volumes/unmanaged lists them).",
                field="storageId",
            )
        now = self.clock.now()
        row = Volume(
            id=f"vol_{uuid.uuid4().hex[:20]}",
            owner=owner,
            name=body.name,
            upstream_name=storage.storage_name,
            status=VolumeStatus.AVAILABLE,
            status_message="Adopted: made outside the service.",
            storage_id=storage.storage_id,
            cluster_id=storage.cluster_id,
            region=storage.cluster_name,
            size_gb=storage.storage_size,
            price_per_hour=price_per_hour(storage),
            adopted=True,
            action_attempts=0,
            billing_since=now,  # billed to its owner from now: before, nobody here knew of it
            created_at=now,
            updated_at=now,
            available_at=now,
            version=1,
        )
        try:
            async with self.db.write() as session:
                taken = await session.scalar(
                    select(Volume.id).where(Volume.storage_id == storage.storage_id, Volume.status.in_(LIVE))
                )
                if taken is not None:
                    raise InvalidInput("STORAGE_MANAGED", "That storage is already a volume.", field="storageId")
                session.add(row)
        except IntegrityError as exc:
            raise VolumeNameTaken(body.name) from exc
        return volume_view(row, [])

    # -- mounts (instances) ----------------------------------------------------------------------

    async def record_mounts(self, session: AsyncSession, instance_id: str, stored: list[dict[str, str]]) -> None:
        """With the instance's insert: the volumes it mounts (its `network_storages` items that are volumes),
        so a volume in use is found by one indexed query. Each volume is read again under a lock, so a
        delete recorded meanwhile refuses this create rather than leaving the instance a deleted volume."""
        for item in stored:
            if "volumeId" not in item:
                continue
            status = await session.scalar(self.db.locked(select(Volume.status).where(Volume.id == item["volumeId"])))
            if status != VolumeStatus.AVAILABLE:
                raise InvalidInput(
                    "VOLUME_NOT_AVAILABLE",
                    f"Volume {item['volume']!r} is {status or 'gone'}; an instance can mount an available volume.",
                    field="volumes",
                )
            session.add(
                InstanceVolume(instance_id=instance_id, volume_id=item["volumeId"], mount_point=item["mountPoint"])
            )

    async def mounts(self, owner: str, wanted: list[VolumeMountIn]) -> list[Mount]:
        """The volumes an instance create names, resolved: each the caller's and available, at most one
        per mount point, all in one region (400 otherwise; another key's volume is not found)."""
        resolved: list[Mount] = []
        async with self.db.read() as session:
            for index, mount in enumerate(wanted):
                try:
                    row = await self._load(session, owner, mount.volume)
                except VolumeNotFound as exc:
                    raise InvalidInput("VOLUME_NOT_FOUND", exc.message, field=f"volumes.{index}.volume") from exc
                if row.status != VolumeStatus.AVAILABLE or row.storage_id is None:
                    raise InvalidInput(
                        "VOLUME_NOT_AVAILABLE",
                        f"Volume {row.name!r} is {row.status}; an instance can mount an available volume.",
                        field=f"volumes.{index}.volume",
                    )
                resolved.append(Mount(row.id, row.name, row.storage_id, row.cluster_id, row.region, mount.mount_point))
        _check_distinct(resolved)
        return resolved


def _check_distinct(mounts: list[Mount]) -> None:
    seen_volumes: set[str] = set()
    seen_points: set[str] = set()
    for index, mount in enumerate(mounts):
        if mount.volume_id in seen_volumes:
            raise InvalidInput("DUPLICATE_VOLUME", f"Volume {mount.name!r} is named twice.", field=f"volumes.{index}")
        if mount.mount_point in seen_points:
            raise InvalidInput(
                "DUPLICATE_MOUNT_POINT", f"Two volumes mount at {mount.mount_point!r}.", field=f"volumes.{index}"
            )
        seen_volumes.add(mount.volume_id)
        seen_points.add(mount.mount_point)
    regions = {mount.cluster_id: mount.region for mount in mounts}
    if len(regions) > 1:
        raise InvalidInput(
            "VOLUMES_IN_DIFFERENT_REGIONS",
            f"An instance runs in one region, and these volumes are in {', '.join(sorted(regions.values()))}.",
            field="volumes",
        )
