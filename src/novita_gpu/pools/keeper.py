"""The pool keeper: keeps each pool's idle members at its targets, drains deleted pools, asks for prewarms.

A pass looks at every pool. For each, under the pool's row lock (pools/service.py), it reads the members,
plans (members.py) and records the plan as the instances API records intent: member creates, starts,
stops and deletes that the reconciler then carries out. Member creates are prepared (the catalog) before
the lock and counted against `max` under it. A refill the team's quota or budget refuses waits, noted on
the pool (`refillBlocked`); so does one after members failed for want of capacity (REFILL_BACKOFF).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.audit import actions, recorder
from novita_gpu.instances.lifecycle import Reason
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.errors import DomainError
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance, Pool
from novita_gpu.kit.workers import StoreWorker
from novita_gpu.novita import NotFound, NovitaClient, NovitaError
from novita_gpu.pools import members
from novita_gpu.pools.members import Census
from novita_gpu.pools.service import PoolService

log = structlog.get_logger(__name__)

_SETTLED_PREWARM = ("Succeeded", "Failed")
# After members failed for want of capacity, the pool waits this long before it creates more.
REFILL_BACKOFF = timedelta(seconds=60)


class PoolKeeper(StoreWorker):
    name = "pool_keeper"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        pools: PoolService,
        client: NovitaClient,
    ) -> None:
        super().__init__(db, clock, settings, settings.pool_check_seconds)
        self.pools = pools
        self.client = client

    async def step(self) -> float:
        await self.tick()
        return self.check_seconds

    async def tick(self) -> None:
        """One pass over every pool (tests call it as they call the reconciler's tick)."""
        self.last_run_at = self.clock.now()
        async with self.db.read() as session:
            ids = list(await session.scalars(select(Pool.id).where(Pool.status != "deleted").order_by(Pool.id)))
        for pool_id in ids:
            try:
                await self.keep(pool_id)
            except Exception:  # one pool's fault must not starve the others
                log.exception("pool_keep_failed", pool_id=pool_id)

    async def keep(self, pool_id: str) -> None:
        spend = await self._may_spend(pool_id)
        plan, pool = await self._record(pool_id, [], spend=spend)
        if pool is None:  # draining or drained: the prewarm tasks it asked for go too (Novita allows ten)
            await self._release_prewarms(pool_id)
            return
        wanted = ["ready"] * plan.create_ready + ["stopped"] * plan.create_stopped
        if wanted and spend:
            try:
                prepared = [await self.pools.prepare_member(pool, state) for state in wanted]
            except DomainError as exc:
                await self._blocked(pool_id, exc.code, exc.message)
                return
            await self._record(pool_id, prepared, spend=spend)
        if (pool.prewarm or {}).get("enabled"):
            await self._prewarm(pool_id)
        else:
            await self._release_prewarms(pool_id)

    async def _may_spend(self, pool_id: str) -> bool:
        """Whether the team's budget lets the pool start or create members (a refused one is noted)."""
        async with self.db.read() as session:
            owner = await session.scalar(select(Pool.owner).where(Pool.id == pool_id))
        try:
            if owner is not None:
                await self.pools.check_budget(owner)
        except DomainError as exc:
            await self._blocked(pool_id, exc.code, exc.message)
            return False
        return True

    async def _record(self, pool_id: str, prepared: list[Instance], *, spend: bool) -> tuple[members.Plan, Pool | None]:
        """Plan under the pool's lock and record it; with `prepared` rows, store those (within max) too.
        Without `spend` (the budget is spent), members are stopped and deleted but none started or made."""
        instances = self.pools.instances
        touched: list[str] = []
        created: list[str] = []
        plan = members.Plan()
        async with self.db.write() as session:
            pool = await self.pools.lock(session, pool_id)
            if pool is None or pool.status == "deleted":
                return members.Plan(), None
            found = await self.pools.members_of(session, pool.id, lock=True)
            census = Census.of(found)
            if pool.status == "draining":
                await self._drain(session, pool, census, touched)
            else:
                plan = await self._carry_out(session, pool, census, prepared, spend, touched, created)
        for row_id in touched:
            instances.notify_changed(row_id)
        for row_id in created:
            instances.accepted(row_id)
        if created or touched:
            log.info("pool_kept", pool=pool.name, created=len(created), changed=len(touched))
        return (plan, pool) if pool.status == "active" else (members.Plan(), None)

    async def _carry_out(
        self,
        session: AsyncSession,
        pool: Pool,
        census: Census,
        prepared: list[Instance],
        spend: bool,
        touched: list[str],
        created: list[str],
    ) -> members.Plan:
        """Plan the pool's members now and record the plan: the ids it changed go to `touched`, the
        members it made to `created`."""
        instances = self.pools.instances
        done: dict[str, list[str]] = {"created": created, "started": [], "stopped": [], "deleted": []}
        now = self.clock.now()
        plan = members.plan(pool, census, now)
        blocked_until = (pool.refill_blocked or {}).get("until")
        if any(row.status_reason == Reason.NO_CAPACITY for row in plan.delete):
            until = now + REFILL_BACKOFF
            pool.refill_blocked = {
                "code": "NO_CAPACITY",
                "message": "Novita had no capacity for a member; the pool tries again later.",
                "at": now.isoformat(),
                "until": until.isoformat(),
            }
            blocked_until = until.isoformat()
        waiting = not spend or (blocked_until is not None and blocked_until > now.isoformat())
        for row in plan.delete:
            await instances.delete_row(session, row, Reason.POOL, message=_why_deleted(row))
            touched.append(row.id)
            done["deleted"].append(row.id)
        for row in plan.park:
            await instances.stop_row(
                session, row, Reason.POOL, message=f"Kept stopped by pool {pool.name}.", pooled=False
            )
            row.pool_state = "stopped"
            touched.append(row.id)
            done["stopped"].append(row.id)
        for row in plan.wake:
            if waiting:
                break
            try:  # (the quota is checked before anything is written: a refusal leaves the session clean)
                await instances.start_row(session, row, f"Started by pool {pool.name} to keep a ready member.")
            except DomainError as exc:
                pool.refill_blocked = {"code": exc.code, "message": exc.message, "at": now.isoformat()}
                break
            row.pool_state = "ready"
            touched.append(row.id)
            done["started"].append(row.id)
        if prepared and not waiting:
            # This plan is made under the lock: another replica may have refilled since the rows were
            # prepared, so only what is still wanted now is stored (the plan holds max too).
            wanted = {"ready": plan.create_ready, "stopped": plan.create_stopped}
            still = [row for row in prepared if _take(wanted, row.pool_state)]
            for row in still:
                try:
                    await instances.insert_row(session, row)
                except DomainError as exc:
                    pool.refill_blocked = {"code": exc.code, "message": exc.message, "at": now.isoformat()}
                    break
                created.append(row.id)
            else:
                pool.refill_blocked = None
        elif spend and not plan.create_ready and not plan.create_stopped and not waiting:
            pool.refill_blocked = None
        if any(done.values()):  # the audit row commits with what it records
            details: dict[str, Any] = {kind: ids for kind, ids in done.items() if ids}
            if pool.refill_blocked:
                details["blocked"] = pool.refill_blocked.get("code")
            entry = recorder.system(actions.POOL, "pool.refill", team=pool.owner, target=pool.id, details=details)
            recorder.add(session, entry, now)
        return plan

    async def _drain(self, session: AsyncSession, pool: Pool, census: Census, touched: list[str]) -> None:
        """A deleted pool: its idle members go; once none is left, the pool is gone and its claimed
        instances are their claimers' alone."""
        idle = census.idle()
        for row in idle:
            if row.desired_state != "terminated":
                await self.pools.instances.delete_row(
                    session, row, Reason.POOL, message=f"Pool {pool.name} was deleted."
                )
                touched.append(row.id)
        if idle:
            return
        claimed = update(Instance).where(Instance.pool_id == pool.id, Instance.pool_state == "claimed")
        await session.execute(claimed.values(pool_state=None, pool_id=None, pool_name=None))
        touched += [row.id for row in census.claimed]  # their views change: the caches hear of it
        pool.status = "deleted"
        pool.updated_at = self.clock.now()
        left = len(census.claimed)
        entry = recorder.system(
            actions.POOL, "pool.drain", team=pool.owner, target=pool.id, details={"claimedLeft": left}
        )
        recorder.add(session, entry, pool.updated_at)
        log.info("pool_drained", pool=pool.name)

    async def _blocked(self, pool_id: str, code: str, message: str) -> None:
        async with self.db.write() as session:
            pool = await self.pools.lock(session, pool_id)
            if pool is not None:
                pool.refill_blocked = {"code": code, "message": message, "at": self.clock.now().isoformat()}

    async def _release_prewarms(self, pool_id: str) -> None:
        """Delete at Novita the prewarm tasks a pool asked for, once it no longer wants them (prewarm turned
        off, the pool deleted), and forget each one deleted (or already gone)."""
        async with self.db.read() as session:
            pool = await session.get(Pool, pool_id)
        if pool is None or not _kept_tasks(pool):
            return
        left = []
        for task in _kept_tasks(pool):
            if task.get("taskId"):
                try:
                    await self.client.delete_prewarm_tasks([task["taskId"]])
                except NotFound:
                    pass
                except NovitaError as exc:
                    log.warning("pool_prewarm_delete_failed", pool=pool.name, error=type(exc).__name__)
                    left.append(task)
        async with self.db.write() as session:
            row = await self.pools.lock(session, pool_id)
            if row is not None:
                row.prewarm = {**(row.prewarm or {}), "tasks": left}

    async def _prewarm(self, pool_id: str) -> None:
        """Ask Novita once per cluster the pool's members land in (or its region's) to prewarm the image, and
        follow each task's state."""
        async with self.db.read() as session:
            pool = await session.get(Pool, pool_id)
            if pool is None:
                return
            image = await session.scalar(select(Instance.image_url).where(Instance.pool_id == pool_id).limit(1))
            # Where members landed, and where those not placed yet will (a pool with a region: from its first
            # member's create on, before Novita has placed it).
            placed = (
                await session.execute(select(Instance.cluster_id, Instance.regions).where(Instance.pool_id == pool_id))
            ).all()
            clusters = {
                cluster for cluster, regions in placed for cluster in (cluster, *(regions or [])[:1]) if cluster
            }
        if image is None:
            return
        tasks: dict[str, dict[str, Any]] = {t["clusterId"]: t for t in (pool.prewarm or {}).get("tasks") or []}
        changed = False
        for cluster in sorted(c for c in clusters if c):
            task = tasks.get(cluster)
            if task is not None and task.get("state") in _SETTLED_PREWARM:
                continue
            try:
                # Novita's own list first: a task asked for before a crash is followed, never asked twice.
                found = [t async for t in self.client.iter_prewarm_tasks(cluster_id=cluster) if t.image_url == image]
                if found:
                    seen = {"clusterId": cluster, "taskId": found[0].id, "state": found[0].state}
                else:
                    task_id = await self.client.create_prewarm_task(image, cluster, note=f"pool {pool.name}")
                    seen = {"clusterId": cluster, "taskId": task_id, "state": "Pending"}
            except NovitaError as exc:
                log.warning("pool_prewarm_failed", pool=pool.name, cluster_id=cluster, error=type(exc).__name__)
                continue
            if seen != task:
                tasks[cluster] = seen
                changed = True
        if changed:
            async with self.db.write() as session:
                row = await self.pools.lock(session, pool_id)
                if row is not None:
                    row.prewarm = {**(row.prewarm or {}), "tasks": list(tasks.values())}


def _kept_tasks(pool: Pool) -> list[dict[str, Any]]:
    return list((pool.prewarm or {}).get("tasks") or [])


def _take(wanted: dict[str, int], state: str | None) -> bool:
    if state is None or wanted.get(state, 0) <= 0:
        return False
    wanted[state] -= 1
    return True


def _why_deleted(row: Instance) -> str:
    if members.is_broken(row):
        return f"Replaced by its pool: it {row.status} ({row.status_reason or 'no reason given'})."
    return "Its pool keeps fewer idle members now."
