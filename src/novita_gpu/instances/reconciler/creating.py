"""Creating: a row without an upstream instance, from its first create to an instance, or to its end.

A create goes out under the record's unique upstream name, the chosen offer written first, so a create is
never made twice (docs/lifecycle.md): the first offer with capacity wins (`INSUFFICIENT_RESOURCE` tries the
next; all sold out waits, until CAPACITY_WAIT_SECONDS). A create Novita may have made is in doubt: never
answered, it is only looked for in the listing (adopted when its name shows, given up at the startup
deadline); answered with an error, it is looked for a short while and then sent again. A create whose
sender died before any answer (killed, or stopped mid-call) is looked for until its call would have ended
and Novita's answer would show in the list (`looked_up_until`), then sent again: should the first one
still complete, ownership deletes the duplicate on sight. A record stopped or deleted before Novita made
its instance ends without one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.catalog.service import Catalog, CatalogError
from novita_gpu.instances import recovery
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.guarded_write import update_if_current
from novita_gpu.instances.lifecycle import Action, Goal, Reason, Status
from novita_gpu.instances.reconciler.recovering import Recovering
from novita_gpu.instances.reconciler.writes import RowWrites
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.in_doubt import AMBIGUOUS_CREATE_GRACE, looked_up_until
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import (
    AmbiguousCreate,
    CreateInstanceRequest,
    EnvVar,
    InsufficientResource,
    Listed,
    NetworkStorageMount,
    NovitaClient,
    NovitaError,
    RateLimited,
)

log = structlog.get_logger(__name__)


class Creating:
    def __init__(
        self,
        writes: RowWrites,
        db: Database,
        changes: ChangeFeed,
        client: NovitaClient,
        catalog: Catalog,
        clock: Clock,
        settings: Settings,
        recovering: Recovering,
    ) -> None:
        self.writes = writes
        self.recovering = recovering
        self.db = db
        self.changes = changes
        self.client = client
        self.catalog = catalog
        self.clock = clock
        self.settings = settings

    async def adopt(self, row: Instance, upstream: Listed) -> Instance | None:
        """The instance exists upstream under our unique name: record it instead of creating another."""
        log.info("reconcile_adopt", instance_id=row.id, novita_instance_id=upstream.id)

        async def mutate(session: AsyncSession, r: Instance) -> None:
            r.novita_instance_id = upstream.id
            r.recovery = recovery.with_replacement(r.recovery, upstream.id) or r.recovery
            r.create_attempted_at = None
            r.next_action_at = None  # nothing left to send again; a stop or delete asked meanwhile starts now
            if r.pending_action == Action.CREATE:
                r.pending_action = None
            wait = self.settings.startup_timeout_seconds
            if r.desired_state != Goal.RUNNING:  # stopped or deleted meanwhile: that action starts now
                wait = self.settings.action_timeout_seconds
            r.phase_deadline_at = self.clock.now() + timedelta(seconds=wait)

        return await self.writes.apply(row, mutate)

    async def without_upstream(self, row: Instance, now: datetime) -> bool:
        """A row Novita shows no instance of (none under its name either): create it, wait for a create in
        doubt to show, give that up at its deadline, or end a record no longer wanted without one."""
        if row.create_attempted_at is not None:  # a create went out and Novita has not shown its instance
            if now >= row.create_attempted_at + timedelta(seconds=self.settings.startup_timeout_seconds):
                return await self._give_up(row, now)
            if row.next_action_at is None or now < row.next_action_at:
                # Unanswered (it may still complete: never sent again), or answered with an error or left
                # without an answer by its sender's death and still being looked up by name: wait for it
                # to appear, then adopt it.
                return False
        if row.desired_state != Goal.RUNNING:
            return await self._settle_without_instance(row, now, message=None)
        if row.status in (Status.CREATING, Status.RECOVERING):  # a first create, or a recovery's recreate
            return await self._create(row, now)
        return False

    async def _settle_without_instance(self, row: Instance, now: datetime, *, message: str | None) -> bool:
        """A record stopped or deleted before Novita made its instance ends here, without one."""
        to = Status.TERMINATED if row.desired_state == Goal.TERMINATED else Status.STOPPED

        async def settle(session: AsyncSession, r: Instance) -> None:
            r.pending_action = None
            r.create_attempted_at = None
            r.next_action_at = None
            if to == Status.TERMINATED:
                r.terminated_at = now
            else:
                r.stopped_at = now
            await self.writes.change(session, r, to, reason=r.pending_reason or Reason.USER, message=message)

        return await self.writes.apply(row, settle) is not None

    async def _give_up(self, row: Instance, now: datetime) -> bool:
        """Novita never showed the instance of a create it did not answer. It is not sent again (it may
        still complete); should it appear later, its record no longer wants it and it is deleted."""
        waited = f"{self.settings.startup_timeout_seconds:.0f} s"
        later = "it is not sent again, since it may still complete, and an instance appearing later is deleted"
        if row.desired_state != Goal.RUNNING:
            return await self._settle_without_instance(
                row, now, message=f"Novita did not confirm the create within {waited}; {later}."
            )
        return await self.writes.fail(
            row, Reason.STARTUP_TIMEOUT, f"Novita did not confirm the create within {waited}; {later}."
        )

    async def _create(self, row: Instance, now: datetime) -> bool:
        if row.next_action_at is not None and row.next_action_at > now:
            return False
        region, strict = row.regions[0] if row.regions else None, row.strict_region
        recovering = recovery.active(row)
        if recovering:  # the reclaimed instance's cluster first; the only one where its volumes are
            region = (row.recovery or {}).get("cluster") or region
            strict = strict or bool(row.network_storages)
        try:
            offers = await self.catalog.offers(
                row.product_name,
                billing_mode=row.billing_mode,
                gpu_num=row.gpu_num,
                region=region,
                strict_region=strict,
                max_price_per_hour=row.max_price_per_hour,
            )
        except CatalogError as exc:
            return await self.writes.fail(row, Reason.UPSTREAM_ERROR, exc.message)
        except NovitaError as exc:
            return await self.writes.retry_later(row, f"Catalog unavailable ({type(exc).__name__}); retrying.")
        current: Instance | None = row
        for offer in offers:
            sent_at = self.clock.now()
            intent = {
                "create_attempted_at": sent_at,  # from here until an answer, the create is in doubt
                # Written over by the answer; left as is only if this worker dies before one.
                "next_action_at": looked_up_until(sent_at, self.settings),
                "product_id": offer.product_id,
                "cluster_id": offer.cluster_id,
                "region": offer.cluster_name,
                "price_per_hour": round(offer.price_per_hour, 6),
            }
            assert current is not None
            current = await self.writes.update(current, intent)
            if current is None:
                return False
            try:
                novita_id = await self.client.create_instance(self._request(current, offer.cluster_id))
            except InsufficientResource:
                log.info("reconcile_no_capacity", instance_id=row.id, cluster=offer.cluster_name)
                continue
            except AmbiguousCreate as exc:
                log.warning(
                    "reconcile_create_ambiguous",
                    instance_id=row.id,
                    unanswered=exc.unanswered,
                    reason=exc.reason,
                    error=exc.message[:200],
                )
                return await self._in_doubt(current, exc)
            except RateLimited as exc:
                return await self._not_made(current, "Rate limited by Novita; retrying.", exc.retry_after)
            except NovitaError as exc:  # anything but AmbiguousCreate: Novita made nothing
                if exc.status >= 500 or exc.status == 0:
                    return await self._not_made(current, f"Novita unavailable ({exc.reason}); retrying.")
                return await self.writes.fail(
                    current, Reason.UPSTREAM_ERROR, f"Novita refused the create: {exc.message}"
                )
            await self._record_created(current, novita_id)
            return True
        if current is None:
            return False
        if recovering and row.billing_mode == "spot" and recovery.policy_of(row, self.settings).fallback_to_on_demand:
            return await self.recovering.fall_back_to_on_demand(current)
        if row.capacity_wait_until is not None and now >= row.capacity_wait_until:
            return await self.writes.fail(
                current, Reason.NO_CAPACITY, f"No capacity for {row.product_name!r} in any allowed region."
            )
        return await self._not_made(
            current, f"No capacity for {row.product_name!r} in any allowed region yet; waiting for some."
        )

    async def _in_doubt(self, row: Instance, exc: AmbiguousCreate) -> bool:
        """Novita may have made the instance. Unanswered, the create may even complete later: it is never
        sent again, only looked for (until the startup deadline). Answered with an error, it is looked for
        a short while, then sent again if absent (a late duplicate would be deleted on sight)."""

        async def mutate(session: AsyncSession, r: Instance) -> None:
            if exc.unanswered:
                r.next_action_at = None
                r.status_message = "Novita has not answered the create; waiting for the instance to appear."
            else:
                r.next_action_at = self.clock.now() + AMBIGUOUS_CREATE_GRACE
                r.status_message = f"Novita answered the create with an error ({exc.reason}); looking it up."

        return await self.writes.apply(row, mutate) is not None

    async def _not_made(self, row: Instance, message: str, after: float | None = None) -> bool:
        """Novita refused the create or never received it: nothing to look for; try again later."""
        return await self.writes.retry_later(row, message, after, create_made=False)

    def _request(self, row: Instance, cluster_id: str) -> CreateInstanceRequest:
        ports = ",".join(f"{p['port']}/{p['type']}" for p in row.ports) or None
        return CreateInstanceRequest(
            name=recovery.create_name(row),
            product_id=row.product_id or "",
            gpu_num=row.gpu_num,
            rootfs_size=row.rootfs_size,
            image_url=row.image_url,
            image_auth_id=row.image_auth_id,
            cluster_id=cluster_id,
            ports=ports,
            envs=[EnvVar(key=e["key"], value=e["value"]) for e in row.envs],
            command=row.command,
            billing_mode=row.billing_mode,
            kind="gpu",
            network_storages=[
                NetworkStorageMount(id=m["id"], mount_point=m["mountPoint"]) for m in row.network_storages or ()
            ]
            or None,
        )

    async def _record_created(self, row: Instance, novita_id: str) -> None:
        """Persist the new upstream id whatever else changed meanwhile (a user's delete stays pending)."""
        now = self.clock.now()
        created: dict[str, Any] = {
            "novita_instance_id": novita_id,
            "create_attempted_at": None,
            "upstream_status": "toCreate",
            "next_action_at": None,
            "action_attempts": 0,
            "status_message": "Novita is creating the instance.",
            "phase_deadline_at": now + timedelta(seconds=self.settings.startup_timeout_seconds),
            "updated_at": now,
        }
        replaced = recovery.with_replacement(row.recovery, novita_id)  # a recovery's replacement
        if replaced is not None:
            created["recovery"] = replaced
        async with self.db.worker_write() as session:
            # The row as this worker last wrote it when nobody changed it since (nearly always: one UPDATE);
            # else as it is now.
            wrote = row.pending_action == Action.CREATE and await update_if_current(
                session, row, {**created, "pending_action": None}, lease_token=None
            )
            if not wrote:
                r = await session.get(Instance, row.id, populate_existing=True, with_for_update=self.db.locks_rows)
                if r is None or r.novita_instance_id is not None:
                    return
                created["recovery"] = recovery.with_replacement(r.recovery, novita_id) or r.recovery
                for key, value in created.items():
                    setattr(r, key, value)
                if r.pending_action == Action.CREATE:
                    r.pending_action = None
                r.version += 1
        self.changes.pulse(row.id)
        log.info("reconcile_created", instance_id=row.id, novita_instance_id=novita_id)
