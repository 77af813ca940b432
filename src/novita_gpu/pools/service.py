"""Use-cases of warm pools: make, read, change and drain a pool; claim a member; take one back.

Every claim, return and refill of a pool's members runs in one transaction holding the pool's row (locked
FOR UPDATE on PostgreSQL; SQLite's one writer serialises them anyway), so two claims on any replicas never
hand out one member twice, and the pool never counts past `max`. Upstream work stays the reconciler's: a
claim records a start or a create, as the instances API does, and answers.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.costs.meter import stretches
from novita_gpu.costs.report import month_start
from novita_gpu.instances import recovery
from novita_gpu.instances.idempotency import CreateResult
from novita_gpu.instances.lifecycle import GONE, Action, Reason, Status
from novita_gpu.instances.rendering import instance_view, iso
from novita_gpu.instances.schemas import AutoStopIn, CreateInstanceIn
from novita_gpu.instances.service import ActionResult, InstanceService, auto_stop_policy
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.errors import PoolExhausted, PoolNameTaken, PoolNotFound, PoolSpecConflict
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import POOL_IDLE_STATES, Instance, Pool, PoolClaim
from novita_gpu.pools import members
from novita_gpu.pools.members import Census
from novita_gpu.pools.schemas import ClaimIn, PoolIn, PoolUpdateIn
from novita_gpu.webhooks.guard import checked_webhook_url

HOURS_PER_MONTH = 730.0
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class _Claim:
    owner: str
    pool: str
    body: ClaimIn
    webhook_url: str | None
    idempotency_key: str | None
    hashed: str


@dataclass(frozen=True)
class _Claimed:
    answer: dict[str, Any]
    source: str  # ready | stopped | warming | cold
    instance_id: str
    pool_id: str


_SOURCES = ("ready", "stopped", "warming", "cold")
# Fields of a create that a pool's member cannot honour (its spec is the pool's): 400 when given with `pool`.
_SPEC_FIELDS = {
    "rootfs_size": "rootfsSize",
    "region": "region",
    "strict_region": "strictRegion",
    "billing_mode": "billingMode",
    "max_price_per_hour": "maxPricePerHour",
    "envs": "envs",
    "health_check": "healthCheck",
    "image_auth_id": "imageAuthId",
    "network_storages": "networkStorages",
    "volumes": "volumes",
}


def spec_of(body: PoolIn) -> dict[str, Any]:
    return {
        "productName": body.product_name,
        "templateId": body.template_id,
        "gpuNum": body.gpu_num,
        "region": body.region,
        "billingMode": body.billing_mode,
        "rootfsSize": body.rootfs_size,
        "volumes": [v.model_dump(by_alias=True) for v in body.volumes],
        "healthCheck": body.health_check.model_dump(by_alias=True) if body.health_check else None,
    }


def claim_hash(pool: str, body: ClaimIn) -> str:
    canonical = json.dumps({"pool": pool, **body.model_dump(mode="json")}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class PoolService:
    def __init__(self, db: Database, clock: Clock, settings: Settings, instances: InstanceService) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.instances = instances
        # A claim, a return or a change of targets: the keeper refills now rather than at its next look.
        self.changed: Signal[str] = Signal()
        # Hears each claim's source (the metrics); set by build_services.
        self.on_claim: Callable[[str], None] = lambda _source: None

    # -- the pool's row ----------------------------------------------------------------------------

    async def _pool(self, session: AsyncSession, owner: str, name: str, *, lock: bool) -> Pool:
        query = select(Pool).where(Pool.owner == owner, Pool.name == name, Pool.status == "active")
        pool = (await session.execute(self.db.locked(query) if lock else query)).scalar_one_or_none()
        if pool is None:
            raise PoolNotFound(name)
        return pool

    async def lock(self, session: AsyncSession, pool_id: str) -> Pool | None:
        """The pool's row, locked until the transaction ends (the one lock of its members' hand-outs)."""
        query = select(Pool).where(Pool.id == pool_id)
        return (await session.execute(self.db.locked(query))).scalar_one_or_none()

    async def members_of(self, session: AsyncSession, pool_id: str, *, lock: bool = False) -> list[Instance]:
        """The pool's live members. With `lock` (a write under the pool's lock), the idle ones are locked
        too (FOR UPDATE on PostgreSQL), so a reconciler's write to one waits and then finds it changed,
        rather than both writing from the same version; claimed ones are read only (their own writes,
        which may take the pool's lock after theirs, must not wait on this)."""
        live = select(Instance).where(Instance.pool_id == pool_id, Instance.status != Status.TERMINATED)
        if not lock or not self.db.locks_rows:
            return list((await session.execute(live)).scalars())
        idle = self.db.locked(live.where(Instance.pool_state.in_(POOL_IDLE_STATES)))
        found = list((await session.execute(idle)).scalars())
        claimed = live.where(Instance.pool_state.not_in(POOL_IDLE_STATES))
        return found + list((await session.execute(claimed)).scalars())

    def member_body(self, pool: Pool) -> CreateInstanceIn:
        """An idle member's create: the pool's spec, a name of its own, and no auto-stop (the pool decides)."""
        spec = pool.spec
        return CreateInstanceIn.model_validate(
            {
                "name": f"{pool.name}-{uuid.uuid4().hex[:8]}",
                "productName": spec["productName"],
                "templateId": spec["templateId"],
                "gpuNum": spec["gpuNum"],
                "region": spec.get("region"),
                "billingMode": spec.get("billingMode"),
                "rootfsSize": spec.get("rootfsSize"),
                "volumes": spec.get("volumes") or [],
                "healthCheck": spec.get("healthCheck"),
                "autoStop": {"idleMinutes": 0},
                "maxRuntimeMinutes": 0,
            }
        )

    async def prepare_member(self, pool: Pool, state: str) -> Instance:
        """A new member's row (not stored): the pool's spec, kept `state` (ready or stopped) once warm."""
        row = await self.instances.prepare(pool.owner, self.member_body(pool))
        self._as_member(row, pool, state)
        return row

    def _as_member(self, row: Instance, pool: Pool, state: str) -> None:
        row.pool_id, row.pool_name, row.pool_state = pool.id, pool.name, state
        row.disk_price_per_hour = round(
            row.rootfs_size * self.settings.stopped_disk_usd_per_gb_month / HOURS_PER_MONTH, 6
        )

    # -- make, read, change, drain -----------------------------------------------------------------

    async def create(self, owner: str, body: PoolIn) -> dict[str, Any]:
        now = self.clock.now()
        pool = Pool(
            id=f"pool_{uuid.uuid4().hex[:20]}",
            owner=owner,
            name=body.name,
            spec=spec_of(body),
            min_ready=body.min_ready,
            min_stopped=body.min_stopped,
            max_members=body.max,
            idle_minutes=body.idle_minutes,
            return_on_auto_stop=body.return_on_auto_stop,
            prewarm={"enabled": body.prewarm, "tasks": []},
            status="active",
            created_at=now,
            updated_at=now,
        )
        await self.prepare_member(pool, "ready")  # the spec is valid now (product, template, region, volumes)
        try:
            async with self.db.write() as session:
                session.add(pool)
        except IntegrityError as exc:
            raise PoolNameTaken(body.name) from exc
        self.changed.emit(pool.id)
        return await self.view(owner, body.name)

    async def list_pools(self, owner: str) -> dict[str, Any]:
        async with self.db.read() as session:
            pools = (
                await session.execute(
                    select(Pool).where(Pool.owner == owner, Pool.status == "active").order_by(Pool.name)
                )
            ).scalars()
            names = [pool.name for pool in pools]
        return {"pools": [await self.view(owner, name) for name in names]}

    async def view(self, owner: str, name: str) -> dict[str, Any]:
        now = self.clock.now()
        async with self.db.read() as session:
            pool = await self._pool(session, owner, name, lock=False)
            census = Census.of(await self.members_of(session, pool.id))
            claims = (
                await session.execute(
                    select(PoolClaim.source, PoolClaim.at).where(
                        PoolClaim.pool_id == pool.id, PoolClaim.at >= now - _DAY
                    )
                )
            ).all()
        month = sum(
            s.seconds_within(month_start(now), now, now) / 3600.0 * s.price_per_hour
            for s in await stretches(self.db, month_start(now), now, owner, pool=pool.id)
        )
        return self._view(pool, census, claims, month, now)

    def _view(
        self, pool: Pool, census: Census, claims: Sequence[Any], month_usd: float, now: datetime
    ) -> dict[str, Any]:
        spec = pool.spec
        day = len(claims)
        ready_rate = sum((r.price_per_hour or 0.0) for r in census.idle() if r.billing_since is not None)
        stopped_rate = sum((r.disk_price_per_hour or 0.0) for r in census.idle() if r.disk_since is not None)
        return {
            "poolId": pool.id,
            "name": pool.name,
            "team": pool.owner,
            "status": pool.status,
            "productName": spec["productName"],
            "templateId": spec["templateId"],
            "gpuNum": spec["gpuNum"],
            "region": spec.get("region"),
            "billingMode": spec.get("billingMode") or self.settings.default_billing_mode,
            "rootfsSize": spec.get("rootfsSize"),
            "volumes": spec.get("volumes") or [],
            "healthCheck": spec.get("healthCheck"),
            "minReady": pool.min_ready,
            "minStopped": pool.min_stopped,
            "max": pool.max_members,
            "idleMinutes": pool.idle_minutes,
            "returnOnAutoStop": pool.return_on_auto_stop,
            "prewarm": pool.prewarm or {"enabled": False, "tasks": []},
            "dormant": members.dormant(pool, now),
            "members": census.answer(),
            "claims": {
                "lastHour": sum(1 for c in claims if c.at >= now - timedelta(hours=1)),
                "lastDay": day,
                "hitRate": {
                    s: round(sum(1 for c in claims if c.source == s) / day, 4) if day else 0.0 for s in _SOURCES
                },
            },
            "idleCost": {
                "usdPerHour": round(ready_rate + stopped_rate, 6),
                "readyUsdPerHour": round(ready_rate, 6),
                "stoppedUsdPerHour": round(stopped_rate, 6),
                "monthUsd": round(month_usd, 6),
            },
            "refillBlocked": pool.refill_blocked,
            "lastClaimAt": iso(pool.last_claim_at),
            "createdAt": iso(pool.created_at),
            "updatedAt": iso(pool.updated_at),
        }

    async def update(self, owner: str, name: str, body: PoolUpdateIn) -> dict[str, Any]:
        async with self.db.write() as session:
            pool = await self._pool(session, owner, name, lock=True)
            changes = {
                "min_ready": body.min_ready,
                "min_stopped": body.min_stopped,
                "max_members": body.max,
                "idle_minutes": body.idle_minutes,
                "return_on_auto_stop": body.return_on_auto_stop,
            }
            for column, value in changes.items():
                if value is not None:
                    setattr(pool, column, value)
            if body.prewarm is not None and body.prewarm != (pool.prewarm or {}).get("enabled"):
                pool.prewarm = {**(pool.prewarm or {"tasks": []}), "enabled": body.prewarm}
            pool.refill_blocked = None  # a new target is worth a new try
            pool.updated_at = self.clock.now()
        self.changed.emit(pool.id)
        return await self.view(owner, name)

    async def delete(self, owner: str, name: str) -> dict[str, Any]:
        """Drain: the pool is gone at once (its name free again); the keeper deletes its idle members, and
        claimed ones stay their claimers' (they leave the pool)."""
        view = await self.view(owner, name)
        async with self.db.write() as session:
            pool = await self._pool(session, owner, name, lock=True)
            pool.status = "draining"
            pool.updated_at = self.clock.now()
        self.changed.emit(pool.id)
        return {**view, "status": "draining", "updatedAt": iso(pool.updated_at)}

    # -- claims ------------------------------------------------------------------------------------

    async def claim_by_create(self, owner: str, body: CreateInstanceIn, idempotency_key: str | None) -> CreateResult:
        """POST /api/instances with `pool`: the pool's product and template, no spec fields of its own."""
        assert body.pool is not None
        async with self.db.read() as session:
            pool = await self._pool(session, owner, body.pool, lock=False)
        given = body.model_fields_set
        for attribute, alias in _SPEC_FIELDS.items():
            if attribute in given and getattr(body, attribute) not in (None, [], False):
                raise PoolSpecConflict(
                    "POOL_SPEC_FIELD",
                    f"{alias} is the pool's to set: leave it out when claiming from pool {body.pool!r}.",
                    field=alias,
                )
        spec = pool.spec
        for alias, value, wanted in (
            ("productName", body.product_name, spec["productName"]),
            ("templateId", body.template_id, str(spec["templateId"])),
            ("gpuNum", body.gpu_num, spec["gpuNum"]),
        ):
            if value != wanted:
                raise PoolSpecConflict(
                    "POOL_SPEC_MISMATCH", f"Pool {pool.name!r} has {alias} {wanted!r}, not {value!r}.", field=alias
                )
        return await self.claim(owner, body.pool, ClaimIn.of_create(body), idempotency_key)

    async def claim(self, owner: str, name: str, body: ClaimIn, idempotency_key: str | None = None) -> CreateResult:
        """Hand out a member: ready at once, else a stopped one started, else one warming up, else a cold
        create from the pool's spec (within max)."""
        keys = self.instances.idempotency
        hashed = claim_hash(name, body)
        if idempotency_key is not None:
            replay = await keys.replay_of(owner, idempotency_key, hashed)
            if replay is not None:
                return replay
        await self.check_budget(owner)
        webhook_url = checked_webhook_url(body.webhook_url, self.instances.webhook_policy)
        request = _Claim(owner, name, body, webhook_url, idempotency_key, hashed)
        try:
            outcome = await self._claim(request, None)
            if isinstance(outcome, CreateResult):
                return outcome
            if isinstance(outcome, Pool):  # no idle member: a cold create, its row prepared outside the lock
                outcome = await self._claim(request, await self.prepare_member(outcome, "claimed"))
        except IntegrityError as exc:  # the live-name index (or a concurrent request with the same key)
            if idempotency_key is not None:
                replay = await keys.replay_of(owner, idempotency_key, hashed)
                if replay is not None:
                    return replay
            raise await self.instances.name_taken(owner, body.name) from exc
        if isinstance(outcome, CreateResult):
            return outcome
        assert isinstance(outcome, _Claimed)
        self.on_claim(outcome.source)
        if outcome.source == "cold":
            self.instances.accepted(outcome.instance_id)
        else:
            self.instances.notify_changed(outcome.instance_id)
        self.changed.emit(outcome.pool_id)
        return CreateResult(outcome.answer)

    async def _claim(self, request: _Claim, cold: Instance | None) -> _Claimed | Pool | CreateResult:
        """One try, under the pool's lock: the best idle member, else the `cold` row within max. The pool
        (unlocked) when a cold row is needed and none was given."""
        keys = self.instances.idempotency
        async with self.db.write() as session:
            conn = await session.connection()
            if request.idempotency_key is not None:
                replay = await keys.claim(conn, request.owner, request.idempotency_key, request.hashed)
                if replay is not None:
                    return replay
            pool = await self._pool(session, request.owner, request.pool, lock=True)
            found = await self.members_of(session, pool.id, lock=True)
            taken = members.claimable(found)
            if taken:
                source, row = taken[0]
                await self._hand_over(session, pool, row, source, request.body, request.webhook_url)
            else:
                if Census.of(found).total >= pool.max_members:
                    raise PoolExhausted(
                        f"Pool {pool.name!r} has all {pool.max_members} members it may have claimed or on their "
                        "way; raise its max, or return or delete one."
                    )
                if cold is None:
                    return pool
                source, row = "cold", cold
                self._claimed_fields(row, pool, request.body, request.webhook_url)
                await self.instances.insert_row(session, row)
            now = self.clock.now()
            # The pool's claims of the last day are its figures (claims per hour, hit rates); older ones go.
            await session.execute(delete(PoolClaim).where(PoolClaim.pool_id == pool.id, PoolClaim.at < now - _DAY))
            session.add(PoolClaim(pool_id=pool.id, instance_id=row.id, source=source, at=now))
            pool.last_claim_at = now
            answer = {
                **instance_view(row),
                "message": _CLAIM_MESSAGES[source].format(pool=pool.name),
                "claim": {"pool": pool.name, "source": source},
            }
            if request.idempotency_key is not None:
                await keys.remember(conn, request.owner, request.idempotency_key, request.hashed, answer, now)
        return _Claimed(answer, source, row.id, pool.id)

    async def check_budget(self, owner: str) -> None:
        """BudgetExceeded once the team's budget is spent (claims and refills spend as creates do)."""
        if self.instances.budget_guard is not None:
            await self.instances.budget_guard(owner, "create")

    def _claimed_fields(self, row: Instance, pool: Pool, body: ClaimIn, webhook_url: str | None) -> None:
        """What makes the member the claimer's: its name, labels, webhook and policies."""
        row.name = body.name
        row.labels = dict(body.labels)
        row.webhook_url = webhook_url
        for column, value in auto_stop_policy(
            self.settings, body.auto_stop or AutoStopIn(), body.auto_stop_minutes, body.max_runtime_minutes
        ).items():
            setattr(row, column, value)
        row.recovery_policy = recovery.merged_policy(
            recovery.default_policy(self.settings), body.recovery.changes() if body.recovery else {}
        )
        row.pool_id, row.pool_name, row.pool_state = pool.id, pool.name, "claimed"
        row.last_used_at = self.clock.now()

    async def _hand_over(
        self, session: AsyncSession, pool: Pool, row: Instance, source: str, body: ClaimIn, webhook_url: str | None
    ) -> None:
        self._claimed_fields(row, pool, body, webhook_url)
        message = _CLAIM_MESSAGES[source].format(pool=pool.name)
        if source == "stopped":
            await self.instances.start_row(session, row, message)
            return
        if source == "ready":
            row.ready_at = self.clock.now()  # its runtime limit counts from the claim
        await self.instances.change(session, row, Status(row.status), message=message)

    # -- a start refused for capacity -----------------------------------------------------------------

    async def start_refused(self, session: AsyncSession, row: Instance) -> bool:
        """A member's start Novita refused for capacity (its node's GPUs went to someone else), inside the
        reconciler's guarded write of `row`. A claimed one moves on: onto the next stopped member's instance
        (that member takes the refused one and is deleted, so the pool replaces it), else a cold create under
        the record's next upstream name (the refused instance is then deleted on sight: ownership.py). An
        idle one is deleted and replaced. False: not a member of a live pool (the caller's usual ending)."""
        pool = await self.lock(session, row.pool_id) if row.pool_id else None
        if pool is None or pool.status == "deleted":
            return False
        if row.pool_state != "claimed":
            message = "Novita had no capacity to start it on its node; the pool replaces it."
            await self.instances.delete_row(session, row, Reason.POOL, message=message)
            self.changed.emit(pool.id)
            return True
        found = await self.members_of(session, pool.id, lock=True)
        donors = [m for m in found if members.is_stopped(m) and m.id != row.id]
        if donors:
            donor = donors[0]
            refused = {column: getattr(row, column) for column in _UPSTREAM}
            taken = {column: getattr(donor, column) for column in _UPSTREAM}
            donor.upstream_name = f"{donor.upstream_name}~"  # upstream names are unique: make way first
            await session.flush()
            for column, value in taken.items():
                setattr(row, column, value)
            await session.flush()
            for column, value in refused.items():
                setattr(donor, column, value)
            message = "Novita had no capacity on its node; the pool moved the claim onto this instance."
            await self.instances.delete_row(session, donor, Reason.POOL, message=message)
            row.pending_action = Action.START
            row.action_attempts = 0
            row.next_action_at = None
            await self.instances.change(
                session,
                row,
                Status.STARTING,
                message=f"No capacity on the first member's node; starting another stopped member of pool {pool.name}.",
            )
        else:
            row.upstream_generation = (row.upstream_generation or 0) + 1
            row.novita_instance_id = None
            row.upstream_status = None
            row.connection_details = None
            row.pending_action = Action.CREATE
            row.create_attempted_at = None
            row.action_attempts = 0
            row.next_action_at = None
            row.capacity_wait_until = self.clock.now() + timedelta(seconds=self.settings.capacity_wait_seconds)
            await self.instances.change(
                session,
                row,
                Status.CREATING,
                message=f"No capacity on the member's node and no other stopped member: creating one from pool "
                f"{pool.name}'s spec.",
            )
        self.changed.emit(pool.id)
        return True

    # -- returns -----------------------------------------------------------------------------------

    async def take_back(
        self, session: AsyncSession, row: Instance, reason: Reason, asked: bool | None
    ) -> ActionResult | None:
        """A stop of a claimed member that returns it (asked, or its auto-stop under returnOnAutoStop): back
        as a stopped member if the pool wants more idle ones, else deleted. None: a plain stop."""
        if row.pool_state != "claimed" or row.pool_id is None or row.status in GONE:
            return None
        pool = await self.lock(session, row.pool_id)
        if asked is None:
            asked = reason == Reason.AUTO_STOP and pool is not None and pool.return_on_auto_stop
        if not asked:
            return None
        if pool is None or pool.status != "active":
            return None  # a drained pool takes nothing back: a plain stop
        census = Census.of(await self.members_of(session, pool.id, lock=True))
        want_ready, want_stopped = members.targets(pool, self.clock.now())
        room = len(census.idle()) - len(census.broken) < want_ready + want_stopped
        self.changed.emit(pool.id)
        if not room:
            message = f"Returned to pool {pool.name}, which has all the idle members it keeps: deleted."
            result = await self.instances.delete_row(session, row, reason, message=message)
            return ActionResult({**result.answer, "message": message}, result.changed)
        message = f"Returned to pool {pool.name} as a stopped member."
        result = await self.instances.stop_row(session, row, reason, message=message, pooled=False)
        # From here the member is the pool's again: the claimer's name, labels and webhook leave it.
        row.name = self.member_body(pool).name
        row.labels = {}
        row.webhook_url = None
        for column, value in auto_stop_policy(self.settings, AutoStopIn(idle_minutes=0), None, 0).items():
            setattr(row, column, value)
        row.pool_state = "stopped"
        return ActionResult({**result.answer, "message": message}, result.changed)


# The columns that say which Novita instance a record is: a refused start moves a claim onto another member's.
_UPSTREAM = (
    "novita_instance_id",
    "upstream_name",
    "upstream_generation",
    "upstream_status",
    "cluster_id",
    "region",
    "price_per_hour",
    "product_id",
    "connection_details",
)

_CLAIM_MESSAGES = {
    "ready": "Claimed from pool {pool}: ready at once.",
    "stopped": "Claimed from pool {pool}: starting a stopped member (its image is on its node).",
    "warming": "Claimed from pool {pool}: a member on its way up.",
    "cold": "Claimed from pool {pool}: no idle member, creating one from the pool's spec.",
}
