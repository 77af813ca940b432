"""The volume worker: carries out creates and deletes at Novita, and keeps each volume true to its storage.

One pass: list Novita's storages once, then claim the volumes that wait for something (the leased-work
runner, kit/runner.py, so replicas share them) and move each one; on a full pass (every
RECONCILE_SLOW_SECONDS) every available volume too, so a storage deleted or grown outside shows. Last,
storages left behind under our names are deleted ("nothing left behind"). A service without live volumes
never lists Novita's storages.

A create is sent once: `create_attempted_at` is written before the call, and a create whose answer never
came (the process died, the connection broke after sending) is looked for in the list under its unique
name until the call has surely ended (kit/in_doubt.py), and only then sent again. Should both land, the
second is a stray under a volume's name and is deleted at the next pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.in_doubt import looked_up_until
from novita_gpu.kit.runner import LeaseRunner, Work
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Volume
from novita_gpu.kit.workers import StoreWorker
from novita_gpu.novita import NetworkStorage, NovitaClient, NovitaError, RateLimited
from novita_gpu.volumes.billing import close_stretch, reprice
from novita_gpu.volumes.lifecycle import PENDING, VolumeStatus
from novita_gpu.volumes.rendering import price_per_hour

log = structlog.get_logger(__name__)

# A change to a volume's row, written under its lease (the session, for a billing period it closes).
Change = Callable[[AsyncSession, Volume], None]

SLOTS = 8  # volumes worked on at once by one replica
_PATIENCE_SECONDS = 2.0  # how long a pass waits for the volumes it started
_RETRY = timedelta(seconds=10)  # after Novita failed or refused a delete for now
_GONE = "NETWORK_STORAGE_NOT_FOUND"
_IN_USE = "NETWORK_STORAGE_IN_USE"


@dataclass
class StorageListing:
    """Novita's storages, as listed once for a pass."""

    storages: list[NetworkStorage] = field(default_factory=list)

    def by_id(self, storage_id: str | None) -> NetworkStorage | None:
        return next((s for s in self.storages if s.storage_id == storage_id), None)

    def named(self, name: str, cluster_id: str) -> list[NetworkStorage]:
        return [s for s in self.storages if s.storage_name == name and s.cluster_id == cluster_id]


def _in_doubt(error: NovitaError) -> bool:
    """Whether Novita may have acted on a request that failed so: no answer, or a server error."""
    return error.status == 0 or error.status >= 500


class VolumeWorker(StoreWorker):
    name = "volumes"

    def __init__(self, db: Database, clock: Clock, client: NovitaClient, settings: Settings) -> None:
        super().__init__(db, clock, settings, settings.reconcile_slow_seconds)
        self.retry_seconds = settings.reconcile_fast_seconds  # a pass that raised is retried at the fast pace
        self.client = client
        self.runner: LeaseRunner[Volume] = LeaseRunner.for_worker(
            db, clock, Volume, "volumes", lease_seconds=settings.lease_seconds, slots=SLOTS, name="volumes"
        )
        self._next_full_pass = float("-inf")
        self._tick_lock = asyncio.Lock()

    async def step(self) -> float:
        busy = await self.tick()
        return self.settings.reconcile_fast_seconds if busy else self.settings.reconcile_slow_seconds

    def stop(self) -> None:
        self.runner.stop()
        super().stop()

    async def finish(self) -> None:
        await self.runner.drain(self.settings.shutdown_grace_seconds)
        await self.runner.aclose()

    # -- a pass ----------------------------------------------------------------------------------

    async def tick(self, *, full: bool | None = None) -> bool:
        """One pass; True while volumes still wait for something (the next pass comes soon)."""
        async with self._tick_lock:
            now = self.clock.now()
            self.last_run_at = now
            if self.stopping:
                return False
            await self.runner.renew()
            await self.runner.release_late()
            monotonic = self.clock.monotonic()
            if full is None:
                full = monotonic >= self._next_full_pass
            due = await self._due(now, full)
            if not due:  # no live volume (a full pass takes every one): Novita's storages are not listed
                return False
            try:
                listing = StorageListing([s async for s in self.client.iter_network_storages()])
            except NovitaError as exc:
                log.warning("volumes_list_failed", error=type(exc).__name__)
                return True
            if full:
                self._next_full_pass = monotonic + self.settings.reconcile_slow_seconds
            batch = self.runner.batch()
            try:
                await self.runner.pump(
                    due,
                    batch,
                    now=now,
                    deadline=monotonic + _PATIENCE_SECONDS,
                    work_for=lambda row: self._work_for(row, listing, batch.token),
                )
                if batch.running:
                    await asyncio.wait(batch.running, timeout=_PATIENCE_SECONDS)
            finally:
                await self.runner.settle(batch)
            await self._remove_strays(listing)
            return bool(await self._due(self.clock.now(), False)) or bool(self.runner.in_flight)

    async def _due(self, now: datetime, full: bool) -> list[str]:
        """Volumes waiting for a create or a delete whose time has come; on a full pass, available ones too."""
        wanted = (*PENDING, VolumeStatus.AVAILABLE) if full else PENDING
        async with self.db.read() as session:
            rows = await session.execute(
                select(Volume.id, Volume.status, Volume.next_action_at).where(Volume.status.in_(wanted))
            )
            return [
                row_id
                for row_id, status, next_action_at in rows
                if row_id not in self.runner.in_flight
                and (status == VolumeStatus.AVAILABLE or next_action_at is None or next_action_at <= now)
            ]

    def _work_for(self, row: Volume, listing: StorageListing, token: str) -> Work:
        async def work() -> bool:
            if row.status == VolumeStatus.CREATING:
                return await self._create(row, listing, token)
            if row.status == VolumeStatus.DELETING:
                return await self._delete(row, listing, token)
            if row.status == VolumeStatus.AVAILABLE:
                return await self._observe(row, listing, token)
            return False

        return work

    async def _save(self, row_id: str, token: str, change: Change) -> bool:
        """Apply `change` to the row while this worker still holds its lease (else: False, nothing written);
        what it adds to the session (a billing period) is written with it."""
        async with self.db.write() as session:
            row = (
                await session.execute(select(Volume).where(Volume.id == row_id, self.runner.held(token)))
            ).scalar_one_or_none()
            if row is None:
                return False
            change(session, row)
            row.updated_at, row.version = self.clock.now(), row.version + 1
        return True

    # -- creating --------------------------------------------------------------------------------

    async def _create(self, row: Volume, listing: StorageListing, token: str) -> bool:
        now = self.clock.now()
        made = listing.named(row.upstream_name, row.cluster_id)
        if made:  # an earlier create landed though its answer never came
            return await self._made(row.id, token, made[0])
        if row.create_attempted_at is not None and now < looked_up_until(row.create_attempted_at, self.settings):
            return False  # in doubt: looked for at every pass (one listing) until its call has surely ended

        def sending(_: AsyncSession, r: Volume) -> None:
            r.create_attempted_at, r.next_action_at = now, None
            r.action_attempts += 1

        if not await self._save(row.id, token, sending):
            return False
        try:
            storage_id = await self.client.create_network_storage(row.cluster_id, row.upstream_name, row.size_gb)
        except RateLimited as exc:  # surely not made
            retry_at = now + timedelta(seconds=exc.retry_after or _RETRY.total_seconds())

            def not_made(_: AsyncSession, r: Volume) -> None:
                r.create_attempted_at = None
                _wait(r, retry_at, "Rate limited by Novita; retrying.")

            return await self._save(row.id, token, not_made)
        except NovitaError as exc:
            if _in_doubt(exc):
                log.warning("volume_create_in_doubt", volume_id=row.id, reason=exc.reason)
                doubt = "Novita did not answer the create; looking for the storage before sending it again."
                return await self._save(row.id, token, lambda _, r: _wait(r, None, doubt))
            refused = f"Novita refused the create: {exc.message}"
            return await self._save(row.id, token, lambda _, r: _failed(r, refused, now))
        storage = NetworkStorage(storage_id=storage_id, storage_name=row.upstream_name, storage_size=row.size_gb)
        try:
            page = await self.client.list_network_storages(storage_id=storage_id)
            storage = next((s for s in page.storages if s.storage_id == storage_id), storage)
        except NovitaError:  # its price is read at the next full pass
            pass
        return await self._made(row.id, token, storage)

    async def _made(self, row_id: str, token: str, storage: NetworkStorage) -> bool:
        now = self.clock.now()

        def available(_: AsyncSession, r: Volume) -> None:
            r.storage_id, r.available_at, r.next_action_at = storage.storage_id, now, None
            r.create_attempted_at = None
            if storage.price:
                r.price_per_hour = price_per_hour(storage)
            r.billing_since = now
            if r.status == VolumeStatus.CREATING:  # (a delete asked meanwhile stays asked: the storage goes)
                r.status, r.status_message = VolumeStatus.AVAILABLE, None
            log.info("volume_made", volume_id=r.id, storage_id=storage.storage_id, status=r.status)

        return await self._save(row_id, token, available)

    # -- deleting --------------------------------------------------------------------------------

    async def _delete(self, row: Volume, listing: StorageListing, token: str) -> bool:
        now = self.clock.now()
        targets = [s.storage_id for s in listing.named(row.upstream_name, row.cluster_id)] if not row.adopted else []
        if row.storage_id is not None and row.storage_id not in targets:
            # Deleted by id even when the listing does not show it (yet): Novita's NOT_FOUND says it is gone.
            targets.append(row.storage_id)
        if not targets:
            if row.create_attempted_at is not None and now < looked_up_until(row.create_attempted_at, self.settings):
                return False  # a create in doubt may still show: look again at the next pass
            return await self._save(row.id, token, lambda session, r: _deleted(session, r, now))
        for storage_id in targets:
            try:
                await self.client.delete_network_storage(storage_id)
            except NovitaError as exc:
                if exc.reason == _GONE:
                    continue
                message = (
                    "Novita says an instance still mounts the storage; retrying."
                    if exc.reason == _IN_USE
                    else f"Novita did not delete the storage ({exc.reason or exc.status}); retrying."
                )
                return await self._save(row.id, token, _waiting(now + _RETRY, message))
        return await self._save(row.id, token, lambda session, r: _deleted(session, r, now))

    # -- observing -------------------------------------------------------------------------------

    async def _observe(self, row: Volume, listing: StorageListing, token: str) -> bool:
        """An available volume against its storage: gone outside the service, or grown (a lost answer)."""
        now = self.clock.now()
        storage = listing.by_id(row.storage_id)
        if storage is None:

            def gone(session: AsyncSession, r: Volume) -> None:
                _deleted(session, r, now)
                r.status_message = "The storage was deleted outside the service (Novita's console)."

            log.warning("volume_storage_gone", volume_id=row.id, storage_id=row.storage_id)
            return await self._save(row.id, token, gone)
        size = storage.storage_size or row.size_gb
        price = price_per_hour(storage) if storage.price else row.price_per_hour
        if price is None or (size, price) == (row.size_gb, row.price_per_hour):
            return False
        return await self._save(row.id, token, lambda session, r: reprice(session, r, size, price, now))

    # -- strays ----------------------------------------------------------------------------------

    async def _remove_strays(self, listing: StorageListing) -> None:
        """Delete storages under our volumes' names that no live volume holds: a deleted or failed volume's,
        or a second one of a create sent again."""
        names = {s.storage_name for s in listing.storages}
        if not names:
            return
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Volume.upstream_name, Volume.cluster_id, Volume.status, Volume.storage_id).where(
                        Volume.upstream_name.in_(names), Volume.adopted.is_(False)
                    )
                )
            ).all()
        keep = {
            storage_id for _, _, status, storage_id in rows if status not in (VolumeStatus.DELETED, VolumeStatus.FAILED)
        }
        settled = {
            (name, cluster_id)
            for name, cluster_id, status, storage_id in rows
            if status in (VolumeStatus.DELETED, VolumeStatus.FAILED)
            or (status in (VolumeStatus.AVAILABLE, VolumeStatus.DELETING) and storage_id is not None)
        }
        creating = {(name, cluster_id) for name, cluster_id, status, _ in rows if status == VolumeStatus.CREATING}
        for storage in listing.storages:
            key = (storage.storage_name, storage.cluster_id)
            if storage.storage_id in keep or key not in settled or key in creating:
                continue
            log.warning("volume_stray_deleted", storage_id=storage.storage_id, name=storage.storage_name)
            try:
                await self.client.delete_network_storage(storage.storage_id)
            except NovitaError as exc:
                log.warning("volume_stray_delete_failed", storage_id=storage.storage_id, reason=exc.reason)


def _waiting(until: datetime, message: str) -> Change:
    return lambda _, row: _wait(row, until, message)


def _wait(row: Volume, until: datetime | None, message: str) -> None:
    row.next_action_at, row.status_message = until, message


def _failed(row: Volume, message: str, now: datetime) -> None:
    if row.status == VolumeStatus.DELETING:  # deleted while its create was refused: nothing was made
        row.status, row.status_message, row.deleted_at = VolumeStatus.DELETED, message, now
    else:
        row.status, row.status_message, row.failed_at = VolumeStatus.FAILED, message, now
    row.create_attempted_at = row.next_action_at = None


def _deleted(session: AsyncSession, row: Volume, now: datetime) -> None:
    row.status, row.status_message, row.deleted_at, row.next_action_at = VolumeStatus.DELETED, None, now, None
    close_stretch(session, row, now)
