"""Use-cases of the instances API: validate, record intent, answer. Upstream work is the reconciler's.

Every write happens in one transaction with its event and webhook rows; accepted start/stop/delete
requests are stored as `pending_action` before the answer, so they are carried out even if the process
dies right after answering.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    bindparam,
    exists,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.catalog.service import Catalog, CatalogError
from novita_gpu.instances import recovery
from novita_gpu.instances.changes import ChangeFeed
from novita_gpu.instances.events import change_status, record_change
from novita_gpu.instances.idempotency import CreateResult, IdempotencyKeys, request_hash
from novita_gpu.instances.lifecycle import (
    ALREADY_STARTED,
    ALREADY_STOPPED,
    GONE,
    STARTABLE,
    Action,
    Goal,
    Reason,
    Status,
)
from novita_gpu.instances.placement import place
from novita_gpu.instances.read_cache import CachedView, ListPage, ReadCache, list_key
from novita_gpu.instances.rendering import history_view, instance_view
from novita_gpu.instances.schemas import AutoStopIn, CreateInstanceIn, StartIn, UpdateInstanceIn
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.cursor import decode_cursor, encode_cursor
from novita_gpu.kit.db import Database, UTCDateTime, table_of
from novita_gpu.kit.errors import (
    InstanceNotFound,
    InvalidInput,
    InvalidTransition,
    NameTaken,
)
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import Instance, InstanceEvent, WebhookAttempt, WebhookDelivery
from novita_gpu.novita import REQUEST_PATIENCE_SECONDS, NovitaError, answer_within
from novita_gpu.novita.errors import unavailable_for
from novita_gpu.teams import quotas
from novita_gpu.volumes.service import VolumeService
from novita_gpu.webhooks.guard import WebhookPolicy, checked_webhook_url

# Checks a key's budget before it spends more: (owner, "create" | "start") -> raises BudgetExceeded when spent.
BudgetGuard = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What a start, stop or delete did: the `answer` to show, and whether it `changed` anything (False
    when the instance already was, or was going, where it was asked to go)."""

    answer: dict[str, Any]
    changed: bool


# A stop of a claimed pool member that may return it: (session, row, reason, asked) -> the result, or None
# for a plain stop.
PoolReturns = Callable[[AsyncSession, Instance, Reason, bool | None], Awaitable[ActionResult | None]]


def auto_stop_policy(
    settings: Settings, auto_stop: AutoStopIn | None, minutes: int | None, max_runtime: int | None
) -> dict[str, Any]:
    """The policy columns of a new instance: what the body says, else the AUTO_STOP_* defaults.
    `autoStop.idleMinutes` wins over `autoStopMinutes`."""
    policy = auto_stop or AutoStopIn()
    idle = policy.idle_minutes if policy.idle_minutes is not None else minutes
    return {
        "auto_stop_minutes": idle if idle is not None else settings.auto_stop_idle_minutes,
        "auto_stop_signal": policy.signal or settings.auto_stop_signal,
        "auto_stop_gpu_below": policy.gpu_idle_below_percent or settings.auto_stop_gpu_idle_below_percent,
        "auto_stop_action": policy.action or settings.auto_stop_action,
        "max_runtime_minutes": max_runtime if max_runtime is not None else settings.auto_stop_max_runtime_minutes,
    }


_INSTANCE_ATTRIBUTES = tuple(attribute.key for attribute in inspect(Instance).column_attrs)
_INSERT_INSTANCE = insert(table_of(Instance))


_ROWS_BY_ID = select(Instance).where(Instance.id.in_(bindparam("ids", expanding=True)))


def _has_label(index: int, sqlite: bool) -> ColumnElement[bool]:
    """The row's labels hold key `label_key_<index>` with value `label_value_<index>`. SQLite: a lookup in
    json_each, since a JSON path cannot quote every key (`"` ends one); PostgreSQL: `labels ->> key`."""
    key, value = bindparam(f"label_key_{index}", type_=String()), bindparam(f"label_value_{index}", type_=String())
    if not sqlite:
        by_key: ColumnElement[bool] = Instance.labels[key].as_string() == value
        return by_key
    pairs = func.json_each(Instance.labels).table_valued("key", "value", name=f"label_{index}")
    return exists(select(literal(1)).select_from(pairs).where(pairs.c.key == key, pairs.c.value == value))


@functools.lru_cache(maxsize=32)
def _page_queries(
    by_status: bool, by_name: bool, after_cursor: bool, labels: int = 0, sqlite: bool = True
) -> tuple[Select[Any], Select[Any]]:
    """A list page's id query and count query for one shape of filters, built once with bind parameters
    (owner, statuses, name, label keys and values, created + row_id, limit): composing them on every request
    cost about as much as running them."""
    filters = [Instance.owner == bindparam("owner")]
    if by_status:
        filters.append(Instance.status.in_(bindparam("statuses", expanding=True)))
    if by_name:
        filters.append(Instance.name == bindparam("name"))
    filters.extend(_has_label(index, sqlite) for index in range(labels))
    ids = select(Instance.id, Instance.created_at).where(*filters)
    if after_cursor:
        created, row_id = bindparam("created", type_=UTCDateTime()), bindparam("row_id", type_=String())
        ids = ids.where((Instance.created_at < created) | ((Instance.created_at == created) & (Instance.id < row_id)))
    ids = ids.order_by(Instance.created_at.desc(), Instance.id.desc()).limit(bindparam("limit"))
    return ids, select(func.count()).select_from(Instance).where(*filters)


class InstanceService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        catalog: Catalog,
        settings: Settings,
        webhook_policy: WebhookPolicy,
        changes: ChangeFeed,
        volumes: VolumeService,
    ) -> None:
        self.db = db
        self.volumes = volumes
        self.clock = clock
        self.catalog = catalog
        self.settings = settings
        self.idempotency = IdempotencyKeys(db, clock, settings.idempotency_ttl_seconds)
        self.webhook_policy = webhook_policy
        self.changes = changes
        # A use-case committed a change to this instance: its goal, its policy (the reconciler acts on it).
        self.changed: Signal[str | None] = Signal()
        # A create was accepted here (the reconciler sends it out at once, without waiting for a tick).
        self.created: Signal[str] = Signal()
        ttl = settings.read_cache_seconds
        self.reads = ReadCache(changes, clock, ttl=None if ttl is None and db.is_sqlite else (ttl or 1.0))
        self.budget_guard: BudgetGuard | None = None  # set by build_services (costs/budgets.py)
        # Returns once a new create may be accepted (the reconciler's backpressure); set by build_services.
        self.room_for_create: Callable[[], Awaitable[None]] | None = None
        # Takes a claimed pool member back on a stop that returns it; set by build_services (pools/service.py).
        self.pool_returns: PoolReturns | None = None
        # Where a recovery a stop or delete ends is counted; set by build_services (the metrics).
        self.recovery_observer: recovery.Observer = recovery.Unobserved()

    # -- helpers ---------------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, owner: str, ref: str, *, by_name: bool, lock: bool) -> Instance:
        query = select(Instance)
        if by_name:
            query = query.where(Instance.owner == owner, Instance.name == ref, Instance.status != Status.TERMINATED)
        else:
            query = query.where(Instance.id == ref)
        if lock:
            query = self.db.locked(query)
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None or row.owner != owner:  # another key's instance is not found either: no existence leaks
            raise InstanceNotFound(ref)
        return row

    async def change(self, session: AsyncSession, row: Instance, to: Status, **kwargs: Any) -> None:
        await change_status(
            session, row, to, now=self.clock.now(), default_webhook_url=self.settings.webhook_url, **kwargs
        )
        row.version += 1

    def notify_changed(self, instance_id: str | None) -> None:
        """After a committed change: wake long-polls (the change feed) and whoever hears `changed`."""
        self.changes.pulse(instance_id)
        self.changed.emit(instance_id)

    # -- create ----------------------------------------------------------------------------------

    async def create(self, owner: str, body: CreateInstanceIn, idempotency_key: str | None) -> CreateResult:
        hashed = request_hash(body)
        if idempotency_key is not None:
            replay = await self.idempotency.replay_of(owner, idempotency_key, hashed)
            if replay is not None:
                return replay
        if self.budget_guard is not None:
            await self.budget_guard(owner, "create")
        row = await self.prepare(owner, body)
        if self.room_for_create is not None:  # valid: it waits while a burst is being sent (backpressure)
            await self.room_for_create()
        try:
            return await self._insert(row, owner, idempotency_key, hashed)
        except IntegrityError as exc:  # the live-name index, or a concurrent request with the same key
            if idempotency_key is not None:
                replay = await self.idempotency.replay_of(owner, idempotency_key, hashed)
                if replay is not None:
                    return replay
            raise await self.name_taken(owner, body.name) from exc

    async def prepare(self, owner: str, body: CreateInstanceIn) -> Instance:
        """The row of a new instance as `body` asks for it (validated, placed), not yet stored."""
        webhook_url = checked_webhook_url(body.webhook_url, self.webhook_policy)
        billing_mode = body.billing_mode or self.settings.default_billing_mode
        mounts = await self.volumes.mounts(owner, body.volumes)
        try:
            with answer_within(REQUEST_PATIENCE_SECONDS):
                template = await self.catalog.template(body.template_id)
                placed = await place(self.catalog, body, billing_mode, mounts)
        except CatalogError as exc:
            field = {"UNKNOWN_TEMPLATE": "templateId", "UNKNOWN_REGION": "region"}.get(exc.code, "productName")
            raise InvalidInput(exc.code, exc.message, field=field) from exc
        except NovitaError as exc:
            raise unavailable_for(self.catalog.host, exc, "look up the catalog") from exc
        now = self.clock.now()
        instance_id = f"inst_{uuid.uuid4().hex[:20]}"
        envs = {env.key: env.value for env in template.envs}
        envs.update({env.key: env.value for env in body.envs})
        ports = [{"port": port, "type": group.type} for group in template.ports for port in group.ports]
        return Instance(
            id=instance_id,
            owner=owner,
            name=body.name,
            upstream_name=f"{body.name.replace('_', '-')}-{instance_id[5:13]}",
            status=Status.CREATING,
            status_reason=None,
            status_message="Waiting for Novita to create the instance.",
            product_name=placed.offers[0].product_name,
            template_id=template.id,
            image_url=template.image,
            image_auth_id=body.image_auth_id or template.image_auth or None,
            network_storages=[
                *({"id": m.id, "mountPoint": m.mount_point} for m in body.network_storages),
                *(mount.stored() for mount in mounts),
            ],
            command=template.start_command or None,
            ports=ports,
            envs=[{"key": k, "value": v} for k, v in envs.items()],
            gpu_num=body.gpu_num,
            rootfs_size=body.rootfs_size or template.rootfs_size or self.settings.default_rootfs_gb,
            regions=[placed.offers[0].cluster_id] if placed.region else [],
            strict_region=placed.strict_region,
            billing_mode=billing_mode,
            # The first offer's price until the reconciler places it: what the team's quota counts meanwhile.
            price_per_hour=round(placed.offers[0].price_per_hour, 6),
            max_price_per_hour=body.max_price_per_hour,
            webhook_url=webhook_url,
            **auto_stop_policy(self.settings, body.auto_stop, body.auto_stop_minutes, body.max_runtime_minutes),
            billed_seconds=0.0,
            accrued_cost_usd=0.0,
            labels=body.labels,
            recovery_policy=recovery.merged_policy(
                recovery.default_policy(self.settings), body.recovery.changes() if body.recovery else {}
            ),
            upstream_generation=0,
            health_check_path=body.health_check.path if body.health_check else None,
            desired_state=Goal.RUNNING,
            pending_action=Action.CREATE,
            operation_id=f"op_{uuid.uuid4().hex[:16]}",
            action_attempts=0,
            capacity_wait_until=now + timedelta(seconds=self.settings.capacity_wait_seconds),
            created_at=now,
            updated_at=now,
            version=1,
        )

    async def _insert(self, row: Instance, owner: str, idempotency_key: str | None, hashed: str) -> CreateResult:
        async with self.db.write() as session:
            conn = await session.connection()
            if idempotency_key is not None:
                replay = await self.idempotency.claim(conn, owner, idempotency_key, hashed)
                if replay is not None:
                    return replay
            await self.insert_row(session, row)
            response = {**instance_view(row), "message": "Instance creation started."}
            if idempotency_key is not None:
                await self.idempotency.remember(conn, owner, idempotency_key, hashed, response, row.created_at)
        self.accepted(row.id)
        return CreateResult(response)

    async def insert_row(self, session: AsyncSession, row: Instance) -> None:
        """Store a prepared row in the caller's transaction, within the team's quotas, with its first event
        (the caller tells the reconciler with `accepted` once it commits)."""
        now = self.clock.now()
        row.created_at = row.updated_at = now
        row.capacity_wait_until = now + timedelta(seconds=self.settings.capacity_wait_seconds)
        await quotas.enforce(session, row.owner, row.gpu_num, row.price_per_hour or 0.0, lock=self.db.locks_rows)
        # A plain INSERT of the new row (the ORM's unit of work was the larger part of a create).
        await session.execute(_INSERT_INSTANCE, {key: getattr(row, key) for key in _INSTANCE_ATTRIBUTES})
        await self.volumes.record_mounts(session, row.id, row.network_storages)
        await record_change(session, row, None, now=now, default_webhook_url=self.settings.webhook_url)

    def accepted(self, instance_id: str) -> None:
        """After a new row committed: the reconciler sends its create at once."""
        self.notify_changed(instance_id)
        self.created.emit(instance_id)

    async def name_taken(self, owner: str, name: str) -> NameTaken:
        async with self.db.read() as session:
            taken = await session.scalar(
                select(Instance.id).where(
                    Instance.owner == owner, Instance.name == name, Instance.status != Status.TERMINATED
                )
            )
        return NameTaken(name, taken)

    # -- read ------------------------------------------------------------------------------------

    async def get(self, owner: str, instance_id: str) -> Instance:
        async with self.db.read() as session:
            return await self._load(session, owner, instance_id, by_name=False, lock=False)

    async def view(self, owner: str, instance_id: str) -> CachedView:
        """The API view of one instance (the hot read path: served from the read cache when fresh)."""
        cached = self.reads.view(instance_id)
        if cached is None:
            row = await self.get(owner, instance_id)
            cached = CachedView(row.owner, instance_view(row))
            self.reads.put_view(instance_id, cached)
        if cached.owner != owner:
            raise InstanceNotFound(instance_id)
        return cached

    async def wait_for(self, owner: str, instance_id: str, wanted: set[str], timeout: float) -> Instance:
        """Long-poll: return once the instance is in one of `wanted` (or failed/terminated), or at timeout."""
        deadline = self.clock.monotonic() + timeout
        stop_at = wanted | {Status.FAILED, Status.TERMINATED}
        while True:
            row = await self.get(owner, instance_id)
            remaining = deadline - self.clock.monotonic()
            if row.status in stop_at or remaining <= 0:
                return row
            # Changes made by another replica are not pulsed here; re-read at least twice a second.
            await self.changes.wait(min(remaining, 0.5))

    async def list_page(
        self,
        owner: str,
        *,
        statuses: list[str],
        name: str | None,
        limit: int,
        cursor: str | None,
        labels: tuple[tuple[str, str], ...] = (),
    ) -> ListPage:
        """One page, newest first; `labels`: (key, value) pairs an instance must all carry. A page read once
        is answered from the read cache until a change; else its ids come from the index and their views
        from the read cache, so a page is rebuilt cheaply after a change and only changed rows are loaded
        again."""
        page_key = list_key(owner, statuses=statuses, name=name, limit=limit, cursor=cursor, labels=labels)
        cached_page = self.reads.list(page_key)
        if cached_page is not None:
            return cached_page
        ids_query, count_query = _page_queries(bool(statuses), bool(name), bool(cursor), len(labels), self.db.is_sqlite)
        params: dict[str, Any] = {"owner": owner, "statuses": statuses, "name": name, "limit": limit + 1}
        for index, (label_key, label_value) in enumerate(labels):
            params[f"label_key_{index}"], params[f"label_value_{index}"] = label_key, label_value
        if cursor:
            params["created"], params["row_id"] = decode_cursor(cursor)
        keys = [tuple(key) for key in await self.db.fetch(ids_query, params)]
        [(total,)] = await self.db.fetch(count_query, params)
        more = len(keys) > limit
        keys = keys[:limit]
        views = {instance_id: self.reads.view(instance_id) for instance_id, _ in keys}
        missing = [instance_id for instance_id, cached in views.items() if cached is None]
        if missing:
            async with self.db.read() as session:
                for row in (await session.execute(_ROWS_BY_ID, {"ids": missing})).scalars():
                    views[row.id] = fresh = CachedView(row.owner, instance_view(row))
                    self.reads.put_view(row.id, fresh)
        page = ListPage(
            [cached for cached in views.values() if cached is not None],
            total or 0,
            encode_cursor(keys[-1][1], keys[-1][0]) if more and keys else None,
        )
        self.reads.put_list(page_key, page)
        return page

    async def events(self, owner: str, instance_id: str) -> dict[str, Any]:
        async with self.db.read() as session:
            row = await self._load(session, owner, instance_id, by_name=False, lock=False)
            events = list(
                (
                    await session.execute(
                        select(InstanceEvent).where(InstanceEvent.instance_id == row.id).order_by(InstanceEvent.id)
                    )
                ).scalars()
            )
            deliveries = list(
                (
                    await session.execute(
                        select(WebhookDelivery)
                        .where(WebhookDelivery.instance_id == row.id)
                        .order_by(WebhookDelivery.event_id)
                    )
                ).scalars()
            )
            attempts = list(
                (
                    await session.execute(
                        select(WebhookAttempt)
                        .join(WebhookDelivery, WebhookAttempt.delivery_id == WebhookDelivery.id)
                        .where(WebhookDelivery.instance_id == row.id)
                        .order_by(WebhookAttempt.id)
                    )
                ).scalars()
            )
        return history_view(row.id, events, deliveries, attempts)

    # -- actions ---------------------------------------------------------------------------------

    async def start(self, owner: str, ref: str, body: StartIn, *, by_name: bool) -> ActionResult:
        webhook_url = checked_webhook_url(body.webhook_url, self.webhook_policy)
        if self.budget_guard is not None:
            await self.budget_guard(owner, "start")
        async with self.db.write() as session:
            row = await self._load(session, owner, ref, by_name=by_name, lock=True)
            if row.status in ALREADY_STARTED and row.desired_state == Goal.RUNNING:
                return ActionResult(self._answer(row, "Instance is already starting or running."), changed=False)
            if row.status in GONE:
                raise InvalidTransition(f"Instance is {row.status}; it cannot be started.")
            if row.status not in STARTABLE or row.novita_instance_id is None:
                raise InvalidTransition(f"Instance is {row.status}; start it once it has stopped.")
            if webhook_url is not None:
                row.webhook_url = webhook_url
            if body.health_check is not None:
                row.health_check_path = body.health_check.path
            await self.start_row(session, row, "Start requested.")
            answer = self._answer(row, "Instance start initiated.")
        self.notify_changed(row.id)
        return ActionResult(answer, changed=True)

    async def start_row(self, session: AsyncSession, row: Instance, message: str) -> None:
        """Record a start of a stopped row in the caller's transaction, within the team's quotas (also used by
        pools: a claim of a stopped member, a refill)."""
        await quotas.enforce(session, row.owner, row.gpu_num, row.price_per_hour or 0.0, lock=self.db.locks_rows)
        now = self.clock.now()
        row.desired_state = Goal.RUNNING
        row.pending_action = Action.START
        row.pending_reason = Reason.USER
        row.action_attempts = 0
        row.next_action_at = None
        row.operation_id = f"op_{uuid.uuid4().hex[:16]}"
        row.phase_deadline_at = now + timedelta(seconds=self.settings.startup_timeout_seconds)
        row.health_check = None
        row.ready_at = None
        await self.change(session, row, Status.STARTING, message=message)

    async def stop(
        self, owner: str, ref: str, *, by_name: bool, reason: Reason = Reason.USER, return_to_pool: bool = False
    ) -> ActionResult:
        return await self._record(
            owner, ref, by_name, lambda session, row: self.stop_row(session, row, reason, return_to_pool=return_to_pool)
        )

    async def stop_row(
        self,
        session: AsyncSession,
        row: Instance,
        reason: Reason,
        *,
        message: str | None = None,
        return_to_pool: bool | None = None,
        pooled: bool = True,
    ) -> ActionResult:
        """Record a stop in the caller's transaction (also used by the auto-stop sweeper and budgets, whose
        `message` says why). A claimed pool member asked to go back (`return_to_pool`; None: as its pool says
        for an auto-stop) is its pool's to take back (pools/service.py); `pooled=False` is that pool's own stop."""
        if pooled and self.pool_returns is not None:
            returned = await self.pool_returns(session, row, reason, return_to_pool)
            if returned is not None:
                return returned
        if row.status in ALREADY_STOPPED and row.desired_state == Goal.STOPPED:
            return ActionResult(self._answer(row, "Instance is already stopped or stopping."), changed=False)
        if row.status in GONE:
            raise InvalidTransition(f"Instance is {row.status}; it cannot be stopped.")
        self._abandon_recovery(row, "Stopped during the recovery.")
        if row.novita_instance_id is None and row.create_attempted_at is None:
            # Nothing exists upstream yet: stopping means not creating it at all.
            row.pending_action = None
            row.desired_state = Goal.STOPPED
            await self.change(
                session, row, Status.STOPPED, reason=reason, message=message or "Stopped before creation."
            )
            row.stopped_at = self.clock.now()
            return ActionResult(self._answer(row, "Instance creation cancelled."), changed=True)
        row.desired_state = Goal.STOPPED
        row.pending_action = Action.STOP
        row.pending_reason = reason
        row.action_attempts = 0
        row.next_action_at = None
        row.phase_deadline_at = self.clock.now() + timedelta(seconds=self.settings.action_timeout_seconds)
        row.operation_id = f"op_{uuid.uuid4().hex[:16]}"
        await self.change(session, row, Status.STOPPING, reason=reason, message=message or "Stop requested.")
        return ActionResult(self._answer(row, "Instance stop initiated."), changed=True)

    async def delete(self, owner: str, ref: str, *, by_name: bool) -> ActionResult:
        return await self._record(owner, ref, by_name, lambda session, row: self.delete_row(session, row, Reason.USER))

    async def _record(
        self,
        owner: str,
        ref: str,
        by_name: bool,
        record: Callable[[AsyncSession, Instance], Awaitable[ActionResult]],
    ) -> ActionResult:
        """Record an action on the instance, locked, in one transaction; the reconciler is told when it
        changed anything."""
        async with self.db.write() as session:
            row = await self._load(session, owner, ref, by_name=by_name, lock=True)
            result = await record(session, row)
        if result.changed:
            self.notify_changed(row.id)
        return result

    async def delete_row(
        self, session: AsyncSession, row: Instance, reason: Reason, *, message: str | None = None
    ) -> ActionResult:
        """Record a delete in the caller's transaction (also used by the auto-stop sweeper)."""
        if row.status in GONE:
            return ActionResult(self._answer(row, f"Instance is already {row.status}."), changed=False)
        self._abandon_recovery(row, "Deleted during the recovery.")
        row.desired_state = Goal.TERMINATED
        row.operation_id = f"op_{uuid.uuid4().hex[:16]}"
        row.action_attempts = 0
        row.next_action_at = None
        if row.novita_instance_id is None and row.create_attempted_at is None:
            row.pending_action = None
            row.terminated_at = self.clock.now()
            await self.change(session, row, Status.TERMINATED, reason=reason, message=message or "Deleted.")
        else:
            row.pending_action = Action.DELETE
            row.pending_reason = reason
            row.phase_deadline_at = self.clock.now() + timedelta(seconds=self.settings.action_timeout_seconds)
            await self.change(session, row, Status.TERMINATING, reason=reason, message=message or "Delete requested.")
        return ActionResult(self._answer(row, "Instance deletion initiated."), changed=True)

    def _abandon_recovery(self, row: Instance, message: str) -> None:
        """A stop or delete asked during a spot recovery wins: the recovery ends, and a record left without
        a replacement goes back to its reclaimed instance, which the stop or delete then acts on (a create
        of the replacement that completes later is deleted on sight: ownership.py)."""
        if recovery.active(row):
            recovery.end(row, self.clock.now(), "abandoned", message, self.settings, self.recovery_observer)
            if row.pending_action in (Action.CREATE, Action.MIGRATE):
                row.pending_action = None
            row.next_action_at = None

    async def update(self, owner: str, instance_id: str, body: UpdateInstanceIn) -> dict[str, Any]:
        """Change the auto-stop policy, runtime limit or recovery policy; the GPU poller looks again under
        the new auto-stop policy."""
        async with self.db.write() as session:
            row = await self._load(session, owner, instance_id, by_name=False, lock=True)
            if row.status in GONE:
                raise InvalidTransition(f"Instance is {row.status}; its policy no longer matters.")
            policy = body.auto_stop or AutoStopIn()
            idle = policy.idle_minutes if policy.idle_minutes is not None else body.auto_stop_minutes
            changes: dict[str, Any] = {
                "auto_stop_minutes": idle,
                "auto_stop_signal": policy.signal,
                "auto_stop_gpu_below": policy.gpu_idle_below_percent,
                "auto_stop_action": policy.action,
                "max_runtime_minutes": body.max_runtime_minutes,
            }
            if body.recovery is not None:
                changes["recovery_policy"] = recovery.merged_policy(
                    recovery.policy_of(row, self.settings), body.recovery.changes()
                )
            changed = False
            for column, value in changes.items():
                if value is not None and getattr(row, column) != value:
                    setattr(row, column, value)
                    changed = True
            if changed:
                row.gpu_check = None  # a verdict under the old policy decides nothing now
                row.gpu_check_at = None
                row.version += 1
                row.updated_at = self.clock.now()
            view = instance_view(row)
        if changed:
            self.notify_changed(row.id)
        return view

    async def touch(self, owner: str, instance_id: str) -> dict[str, Any]:
        async with self.db.write() as session:
            row = await self._load(session, owner, instance_id, by_name=False, lock=True)
            if row.status in GONE:
                raise InvalidTransition(f"Instance is {row.status}.")
            row.last_used_at = self.clock.now()
            row.version += 1
            view = instance_view(row)
        self.notify_changed(row.id)
        return {
            "instanceId": row.id,
            "lastUsedAt": view["autoStop"]["lastUsedAt"],
            "autoStop": view["autoStop"],
        }

    @staticmethod
    def _answer(row: Instance, message: str) -> dict[str, Any]:
        return {
            "instanceId": row.id,
            "name": row.name,
            "status": row.status,
            "operationId": row.operation_id,
            "message": message,
        }
