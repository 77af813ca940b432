"""Volumes (Novita network storages) in both clients, written once as instances are: every request as a
`Call`, the operations as coroutines over a `core.Transport`, and `VolumeMethods`, which `Methods` (and
so `Client` and `AsyncClient`) takes its volume methods from.

A volume's view has no long-poll, unlike an instance's: a wait reads it again after a pause, short at
first (a create is usually available within a second or two), doubling up to `poll_interval`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Iterable
from urllib.parse import quote

from novita_gpu_client import core
from novita_gpu_client.calls import Call, Json
from novita_gpu_client.config import ClientConfig
from novita_gpu_client.errors import VolumeFailed, VolumeWaitTimeout
from novita_gpu_client.mixins import Answer, CallMethods, Items

AVAILABLE, DELETED, FAILED = "available", "deleted", "failed"
# Where a volume can still go from each status (creating → available → deleting → deleted, or failed).
_AHEAD = {
    "creating": frozenset({"available", "deleting", "deleted", "failed"}),
    "available": frozenset({"deleting", "deleted"}),
    "deleting": frozenset({"deleted"}),
    "deleted": frozenset(),
    "failed": frozenset(),
}
FIRST_POLL = 0.1  # seconds before the first look again
WAIT_TIMEOUT = 300.0
POLL_INTERVAL = 2.0

# -- the requests ---------------------------------------------------------------------------------------


def _volume(ref: str) -> str:
    """A volume's path: one segment whatever the ref holds ("../sync" never reaches another route)."""
    return f"/api/volumes/{quote(ref, safe='')}"


def create(name: str, region: str, size_gb: int) -> Call:
    # Not retried: the API takes no Idempotency-Key for volumes, and a second create of a name is 409.
    return Call("POST", "/api/volumes", body={"name": name, "region": region, "sizeGb": size_gb})


def list_page(
    name: str | None = None, region: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Call:
    given = {"name": name, "region": region, "limit": limit, "cursor": cursor}
    return Call("GET", "/api/volumes", params={k: v for k, v in given.items() if v is not None}, retryable=True)


def get(ref: str) -> Call:
    return Call("GET", _volume(ref), retryable=True)


def resize(ref: str, size_gb: int) -> Call:
    # Growing to a size it already has answers the volume unchanged, so a repeat is harmless.
    return Call("PATCH", _volume(ref), body={"sizeGb": size_gb}, retryable=True)


def delete(ref: str) -> Call:
    # A repeat answers 200 with the volume deleting or deleted.
    return Call("DELETE", _volume(ref), retryable=True)


def unmanaged() -> Call:
    return Call("GET", "/api/volumes/unmanaged", retryable=True)


def adopt(storage_id: str, name: str) -> Call:
    # Not retried: a second adopt of the storage is refused (STORAGE_MANAGED).
    return Call("POST", "/api/volumes/adopt", body={"storageId": storage_id, "name": name})


# -- waiting for a status -------------------------------------------------------------------------------


class VolumeWait:
    """One wait: `outcome(view)` says whether it is over; `pause()` is how long to sleep before the next look."""

    def __init__(self, status: str | Iterable[str], timeout: float, poll_interval: float) -> None:
        self.wanted = frozenset([status] if isinstance(status, str) else status)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deadline = time.monotonic() + timeout
        self.next_pause = min(FIRST_POLL, poll_interval)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def outcome(self, view: Json) -> Json | None:
        """The view when it has a wanted status; None to look again. Raises `VolumeFailed` when no wanted
        status can follow the one it has (a failed create, a volume deleted meanwhile), `VolumeWaitTimeout`
        once the deadline has passed."""
        status = view.get("status")
        if status in self.wanted:
            return view
        ahead = _AHEAD.get(str(status))
        if ahead is not None and not ahead & self.wanted:
            raise VolumeFailed(view, self.wanted)
        if self.remaining() <= 0:
            raise VolumeWaitTimeout(view, self.wanted, self.timeout)
        return None

    def pause(self) -> float:
        pause = min(self.next_pause, self.remaining())
        self.next_pause = min(self.next_pause * 2, self.poll_interval)
        return pause


async def wait_for(
    transport: core.Transport,
    config: ClientConfig,
    view: Json,
    status: str | Iterable[str],
    timeout: float,
    poll_interval: float,
) -> Json:
    """Read the volume of `view` again until it has `status` (`view` first: it may have it already)."""
    wait = VolumeWait(status, timeout, poll_interval)
    call = get(view["volumeId"])
    while (done := wait.outcome(view)) is None:
        await transport.sleep(wait.pause())
        view = await core.send(transport, config, call)
    return done


async def look_up_and_wait(
    transport: core.Transport,
    config: ClientConfig,
    ref: str,
    status: str | Iterable[str],
    timeout: float,
    poll_interval: float,
) -> Json:
    view = await core.send(transport, config, get(ref))
    return await wait_for(transport, config, view, status, timeout, poll_interval)


async def create_volume(
    transport: core.Transport,
    config: ClientConfig,
    name: str,
    region: str,
    size_gb: int,
    wait: bool,
    timeout: float,
    poll_interval: float,
) -> Json:
    created = await core.send(transport, config, create(name, region, size_gb))
    if not wait:
        return created
    return await wait_for(transport, config, created, AVAILABLE, timeout, poll_interval)


async def delete_volume(
    transport: core.Transport, config: ClientConfig, ref: str, wait: bool, timeout: float, poll_interval: float
) -> Json:
    answer = await core.send(transport, config, delete(ref))
    if not wait:
        return answer
    # A failed volume holds no storage: a delete leaves it failed, and there is nothing more to wait for.
    return await wait_for(transport, config, answer, {DELETED, FAILED}, timeout, poll_interval)


async def iter_volumes(
    transport: core.Transport, config: ClientConfig, name: str | None, region: str | None, page_size: int
) -> AsyncGenerator[Json, None]:
    cursor: str | None = None
    while True:
        page = await core.send(transport, config, list_page(name, region, page_size, cursor))
        for volume in page["volumes"]:
            yield volume
        cursor = page.get("nextCursor")
        if not cursor:
            return


async def every_volume(
    transport: core.Transport, config: ClientConfig, name: str | None, region: str | None, page_size: int
) -> Json:
    volumes = [volume async for volume in iter_volumes(transport, config, name, region, page_size)]
    return {"volumes": volumes, "total": len(volumes), "nextCursor": None}


# -- the methods ------------------------------------------------------------------------------------------


class VolumeMethods(CallMethods[Answer, Items]):
    """The volume methods of `Client` and `AsyncClient` (through `Methods`): answers as the client gives
    them, at once (blocking) or to be awaited. Views: `{volumeId, name, status, statusMessage, region,
    sizeGb, storageId, pricePerHour, pricePerGbMonth, mountedBy, ...}`; statuses creating, available,
    deleting, deleted and failed."""

    def create_volume(
        self,
        name: str,
        region: str,
        size_gb: int,
        *,
        wait: bool = True,
        timeout: float = WAIT_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
    ) -> Answer:
        """Create a volume of `size_gb` GB (10 at least) in `region` (a cluster's name or id that supports
        network storage) and, unless `wait=False`, wait until it is `available`. Raises `VolumeFailed` when
        Novita refuses the storage (its `statusMessage` says why), `VolumeWaitTimeout` after `timeout` s."""
        work = create_volume(self._transport, self._config, name, region, size_gb, wait, timeout, poll_interval)
        return self._answer(work)

    def list_volumes(self, name: str | None = None, region: str | None = None, *, page_size: int = 100) -> Answer:
        """Every volume of this key (deleted and failed ones too), newest first, read page after page:
        `{volumes, total, nextCursor: None}`; `name` and `region` keep only those with it."""
        return self._answer(every_volume(self._transport, self._config, name, region, page_size))

    def iter_volumes(self, *, name: str | None = None, region: str | None = None, page_size: int = 100) -> Items:
        """The same volumes one by one, a page read when it is needed."""
        return self._instances(iter_volumes(self._transport, self._config, name, region, page_size))

    def get_volume(self, ref: str) -> Answer:
        """One volume by id (vol_...) or name (the live volume of that name); `ApiError` 404 VOLUME_NOT_FOUND."""
        return self._send(get(ref))

    def wait_for_volume(
        self,
        ref: str,
        status: str | Iterable[str] = AVAILABLE,
        *,
        timeout: float = WAIT_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
    ) -> Answer:
        """Read the volume until it has `status`; `VolumeFailed` when it can no longer get there."""
        return self._answer(look_up_and_wait(self._transport, self._config, ref, status, timeout, poll_interval))

    def resize_volume(self, ref: str, size_gb: int) -> Answer:
        """Grow an available volume to `size_gb` GB (Novita cannot shrink one: 400 VOLUME_SHRINK)."""
        return self._send(resize(ref, size_gb))

    def delete_volume(
        self, ref: str, *, wait: bool = False, timeout: float = WAIT_TIMEOUT, poll_interval: float = POLL_INTERVAL
    ) -> Answer:
        """Delete a volume (its data is lost): the answer is the volume `deleting` (or already `deleted`);
        with `wait=True`, once it is `deleted`. `ApiError` 409 VOLUME_IN_USE while an instance that is not
        terminated mounts it (its message names them; `details` holds their ids)."""
        return self._answer(delete_volume(self._transport, self._config, ref, wait, timeout, poll_interval))

    def unmanaged_storages(self) -> Answer:
        """Admin keys: network storages at Novita that no volume stands for (made in Novita's console):
        `{storages: [{storageId, name, region, clusterId, sizeGb, pricePerHour}]}`."""
        return self._send(unmanaged())

    def adopt_volume(self, storage_id: str, name: str) -> Answer:
        """Admin keys: make an unmanaged storage a volume called `name`, owned by this key."""
        return self._send(adopt(storage_id, name))
