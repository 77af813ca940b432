"""The billing meter: when Novita bills an instance, at what price, and what it has cost so far.

What counts as billed (docs/costs.md): Novita bills an instance from the moment it pulls its image
(`pulling`, Novita's pricing guide) until it is `exited`; a start of a stopped instance bills from
`toStart` [INF]; a delete ends billing when the removal begins (`toRemove`) [INF]. Creating (`toCreate`,
`creating`) and stopped (`exited`) instances bill no GPU time (a stopped instance's kept disk may cost
a little; Novita's API gives no price for it, so it is not counted). Spot instances bill the same way, at
the spot price they were created at, and a reclaim ends billing when they are `exited`.

The meter follows `instances.upstream_status` wherever it is written: a hook on every ORM flush sees the
row's old and new Novita status in the same transaction as the change, and opens or closes the billed
stretch at the row's `updated_at` (the moment the change was observed). So no code path that records a
status through the ORM can forget the meter (a Core UPDATE of `upstream_status` would bypass it:
tests/integration/costs/test_costs.py, which checks costs against the emulator's timeline, fails if one does),
and a crash loses nothing: the open stretch's start is on the row, and a
closed stretch is a ledger row (`billing_periods`) written in the transaction that closed it. The row's
`accrued_cost_usd` / `billed_seconds` hold the total as of `accrued_at`; the worker in budgets.py moves
that forward every minute for instances still billing (`checkpoint`), so the figure in an instance's view
is never more than a minute old, and survives restarts.

Volumes (Novita network storages) bill from creation to deletion, mounted or not, at their price for the
whole volume. The volume service keeps their stretches as the meter keeps instances': the open one on the
row (`volumes.billing_since`, at `price_per_hour`), closed ones in `volume_billing_periods`, closed and
reopened at each resize (the new size's price) and closed at deletion. `stretches` reads both kinds, so
reports and budgets count volumes as they count instances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import bindparam, event, false, inspect, select, update
from sqlalchemy.orm import Session, UOWTransaction

from novita_gpu.instances.rendering import cost_view
from novita_gpu.kit.db import Database, table_of
from novita_gpu.kit.tables import POOL_IDLE_STATES, BillingPeriod, Instance, Volume, VolumeBillingPeriod

BILLED = frozenset(
    {
        "pulling",
        "toStart",
        "starting",
        "running",
        "toRestart",
        "restarting",
        "toReset",
        "resetting",
        "migrating",
        "toStop",
        "stopping",
        "freezing",
    }
)


def billed(upstream_status: str | None) -> bool:
    return upstream_status in BILLED


def accrue(row: Instance, at: datetime) -> None:
    """Move the row's billed time and cost forward to `at` (nothing when it is not billing, or already is).

    Accrual is linear at the stretch's fixed price, so a row read a little earlier gives the same total:
    a checkpoint written meanwhile is overtaken, not lost."""
    since = row.billing_since
    if since is None:
        return
    start = max(since, row.accrued_at) if row.accrued_at is not None else since
    seconds = (at - start).total_seconds()
    if seconds <= 0:
        return
    row.billed_seconds = (row.billed_seconds or 0.0) + seconds
    row.accrued_cost_usd = (row.accrued_cost_usd or 0.0) + seconds / 3600.0 * (row.price_per_hour or 0.0)
    row.accrued_at = at


def _period(row: Instance, ended_at: datetime, pool: str | None) -> BillingPeriod:
    assert row.billing_since is not None
    return BillingPeriod(
        instance_id=row.id,
        owner=row.owner,
        instance_name=row.name,
        product_name=row.product_name,
        billing_mode=row.billing_mode,
        gpu_num=row.gpu_num,
        price_per_hour=row.price_per_hour or 0.0,
        labels=dict(row.labels or {}),
        started_at=row.billing_since,
        ended_at=ended_at,
        pool=pool,
        kind="gpu",
    )


def _before(history: Any, current: Any) -> Any:
    """A column's value before this flush (its current one when unchanged)."""
    if not history.has_changes():
        return current
    return history.deleted[0] if history.deleted else None


def _pool_of(state: str | None, pool_id: str | None) -> str | None:
    return pool_id if state in POOL_IDLE_STATES else None


def _observe(session: Session, row: Instance) -> None:
    attrs = inspect(row).attrs
    status_history, state_history = attrs.upstream_status.history, attrs.pool_state.history
    if not status_history.has_changes() and not state_history.has_changes():
        return
    before = _before(status_history, row.upstream_status)
    old_pool = _pool_of(_before(state_history, row.pool_state), _before(attrs.pool_id.history, row.pool_id))
    new_pool = _pool_of(row.pool_state, row.pool_id)
    at = row.updated_at or datetime.now(UTC)
    _observe_disk(session, row, before, old_pool, new_pool, at)
    now_billed, was_billed = billed(row.upstream_status), billed(before)
    if now_billed and was_billed and old_pool != new_pool and row.billing_since is not None:
        # Claimed from a pool, or returned to one: the stretch so far is the old side's.
        accrue(row, at)
        session.add(_period(row, at, old_pool))
        row.billing_since = at
        return
    if now_billed == was_billed:
        return
    if now_billed:
        if row.billing_since is None:
            row.billing_since = at
            row.accrued_at = at
        return
    if row.billing_since is None:
        return
    accrue(row, at)
    session.add(_period(row, at, old_pool))
    row.billing_since = None


def _observe_disk(
    session: Session, row: Instance, before: str | None, old_pool: str | None, new_pool: str | None, at: datetime
) -> None:
    """A stopped idle member's kept disk bills its pool while it is `exited` (no Novita price for it: the
    member's `disk_price_per_hour` comes from STOPPED_DISK_USD_PER_GB_MONTH, docs/pools.md)."""
    was_disk = old_pool is not None and before == "exited"
    now_disk = new_pool is not None and row.upstream_status == "exited"
    if now_disk and not was_disk and row.disk_since is None:
        row.disk_since = at
    elif was_disk and not now_disk and row.disk_since is not None:
        session.add(
            BillingPeriod(
                instance_id=row.id,
                owner=row.owner,
                instance_name=row.name,
                product_name=row.product_name,
                billing_mode=row.billing_mode,
                gpu_num=0,
                price_per_hour=row.disk_price_per_hour or 0.0,
                labels={},
                started_at=row.disk_since,
                ended_at=at,
                pool=old_pool,
                kind="disk",
            )
        )
        row.disk_since = None


def _before_flush(session: Session, _flush: UOWTransaction, _instances: Iterable[Any] | None) -> None:
    for obj in list(session.dirty):
        if isinstance(obj, Instance):
            _observe(session, obj)


def install() -> None:
    """Follow every session's flushes (once per process)."""
    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)


install()


# The product a volume's cost is reported under (`groupBy=product`, a row's `productName`): Novita's own
# name for the kind of thing, which no GPU product is called.
VOLUME_PRODUCT = "network-storage"

Kind = Literal["instance", "volume", "disk"]  # disk: a stopped idle pool member's kept disk


@dataclass(frozen=True)
class Stretch:
    """A billed stretch of an instance or a volume, closed (from a ledger) or still open (from its row)."""

    id: str  # the instance's or the volume's
    owner: str
    name: str
    product_name: str  # VOLUME_PRODUCT for a volume
    billing_mode: str
    gpu_num: int  # 0 for a volume
    price_per_hour: float  # USD for the whole instance or volume
    labels: dict[str, str]
    started_at: datetime
    ended_at: datetime | None  # None: Novita still bills it
    kind: Kind = "instance"
    region: str | None = None  # a volume's
    size_gb: int | None = None  # a volume's, during this stretch
    pool: str | None = None  # the pool's id, while this was an idle member of it (the pool's idle cost)

    def seconds_within(self, start: datetime, end: datetime, now: datetime) -> float:
        """Billed seconds of this stretch inside [start, end), counting an open one up to `now`."""
        stop = min(end, self.ended_at or now)
        return max(0.0, (stop - max(start, self.started_at)).total_seconds())


def _volume_stretch(
    volume_id: str,
    owner: str,
    name: str,
    region: str,
    size_gb: int,
    price_per_hour: float | None,
    started_at: datetime,
    ended_at: datetime | None,
) -> Stretch:
    return Stretch(
        volume_id,
        owner,
        name,
        VOLUME_PRODUCT,
        "onDemand",
        0,
        price_per_hour or 0.0,
        {},
        started_at,
        ended_at,
        kind="volume",
        region=region,
        size_gb=size_gb,
    )


async def stretches(
    db: Database, start: datetime, end: datetime, owner: str | None = None, *, pool: str | None = None
) -> list[Stretch]:
    """Every billed stretch, of instances and of volumes, that overlaps [start, end): closed ones from the
    ledgers, open ones from rows (read in one transaction, so a stretch closing meanwhile counts once).
    With `pool` (an id), only what its idle members cost: no volume, no claimed instance."""
    closed = select(BillingPeriod).where(BillingPeriod.ended_at > start, BillingPeriod.started_at < end)
    open_rows = select(Instance).where(Instance.billing_since.is_not(None), Instance.billing_since < end)
    open_disks = select(
        Instance.id,
        Instance.owner,
        Instance.name,
        Instance.product_name,
        Instance.billing_mode,
        Instance.disk_price_per_hour,
        Instance.disk_since,
        Instance.pool_id,
    ).where(Instance.disk_since.is_not(None), Instance.disk_since < end)
    closed_volumes = select(
        VolumeBillingPeriod.volume_id,
        VolumeBillingPeriod.owner,
        VolumeBillingPeriod.volume_name,
        VolumeBillingPeriod.region,
        VolumeBillingPeriod.size_gb,
        VolumeBillingPeriod.price_per_hour,
        VolumeBillingPeriod.started_at,
        VolumeBillingPeriod.ended_at,
    ).where(VolumeBillingPeriod.ended_at > start, VolumeBillingPeriod.started_at < end)
    open_volumes = select(
        Volume.id,
        Volume.owner,
        Volume.name,
        Volume.region,
        Volume.size_gb,
        Volume.price_per_hour,
        Volume.billing_since,
    ).where(Volume.billing_since.is_not(None), Volume.billing_since < end)
    if pool is not None:
        idle = (Instance.pool_id == pool) & Instance.pool_state.in_(POOL_IDLE_STATES)
        closed = closed.where(BillingPeriod.pool == pool)
        open_rows, open_disks = open_rows.where(idle), open_disks.where(idle)
        closed_volumes, open_volumes = closed_volumes.where(false()), open_volumes.where(false())
    if owner is not None:
        closed = closed.where(BillingPeriod.owner == owner)
        open_rows = open_rows.where(Instance.owner == owner)
        open_disks = open_disks.where(Instance.owner == owner)
        closed_volumes = closed_volumes.where(VolumeBillingPeriod.owner == owner)
        open_volumes = open_volumes.where(Volume.owner == owner)
    async with db.read() as session:
        periods: Sequence[BillingPeriod] = (await session.execute(closed)).scalars().all()
        rows: Sequence[Instance] = (await session.execute(open_rows)).scalars().all()
        disks = (await session.execute(open_disks)).all()
        volume_periods = (await session.execute(closed_volumes)).all()
        volumes = (await session.execute(open_volumes)).all()
    found = [
        Stretch(
            p.instance_id,
            p.owner,
            p.instance_name,
            p.product_name,
            p.billing_mode,
            p.gpu_num,
            p.price_per_hour,
            dict(p.labels or {}),
            p.started_at,
            p.ended_at,
            kind="disk" if p.kind == "disk" else "instance",
            pool=p.pool,
        )
        for p in periods
    ]
    for row in rows:
        assert row.billing_since is not None
        found.append(
            Stretch(
                row.id,
                row.owner,
                row.name,
                row.product_name,
                row.billing_mode,
                row.gpu_num,
                row.price_per_hour or 0.0,
                dict(row.labels or {}),
                row.billing_since,
                None,
                pool=_pool_of(row.pool_state, row.pool_id),
            )
        )
    for d in disks:
        assert d.disk_since is not None
        found.append(
            Stretch(
                d.id,
                d.owner,
                d.name,
                d.product_name,
                d.billing_mode,
                0,
                d.disk_price_per_hour or 0.0,
                {},
                d.disk_since,
                None,
                kind="disk",
                pool=d.pool_id,
            )
        )
    for p in volume_periods:
        found.append(
            _volume_stretch(
                p.volume_id, p.owner, p.volume_name, p.region, p.size_gb, p.price_per_hour, p.started_at, p.ended_at
            )
        )
    for v in volumes:
        assert v.billing_since is not None
        found.append(
            _volume_stretch(v.id, v.owner, v.name, v.region, v.size_gb, v.price_per_hour, v.billing_since, None)
        )
    return found


_BILLING_ROWS = select(
    Instance.id,
    Instance.billing_since,
    Instance.accrued_at,
    Instance.billed_seconds,
    Instance.accrued_cost_usd,
    Instance.price_per_hour,
).where(Instance.billing_since.is_not(None))


# One statement for every row of a checkpoint, run with many parameter sets: the compare-and-set on the
# open stretch and the last checkpoint (NULL-safe: a first checkpoint has none).
_INSTANCES = table_of(Instance)
_CHECKPOINT = (
    update(_INSTANCES)
    .where(
        _INSTANCES.c.id == bindparam("row_id"),
        _INSTANCES.c.billing_since == bindparam("since"),
        _INSTANCES.c.accrued_at.is_not_distinct_from(bindparam("accrued")),
    )
    .values(billed_seconds=bindparam("seconds"), accrued_cost_usd=bindparam("cost"), accrued_at=bindparam("now"))
)
# Rows per write transaction: SQLite runs inline, so one transaction for every billing instance held the
# event loop for as long as it took, every minute (docs/performance.md); each batch is a worker's turn.
CHECKPOINT_BATCH = 500


async def checkpoint(
    db: Database, now: datetime, on_written: Callable[[dict[str, dict[str, Any]]], None] | None = None
) -> dict[str, dict[str, Any]]:
    """Write every billing instance's cost so far: the rows written, each with its new `cost` object as
    views show it. A compare-and-set on the open stretch and the last checkpoint: a row whose stretch closed
    or that was moved on meanwhile is left as it is. `version` is not bumped: this is bookkeeping, and the
    reconciler's guarded writes must not lose a turn. Written CHECKPOINT_BATCH rows at a time, each batch a
    worker's turn; `on_written` hears each batch's rows as soon as it commits, before anything else can
    write them (the read cache moves their views' cost then: later, it could undo a newer write)."""
    rows = await db.fetch(_BILLING_ROWS)
    written: dict[str, dict[str, Any]] = {}
    batch: list[dict[str, Any]] = []

    async def write() -> None:
        by_id = {params["row_id"]: params for params in batch}
        costs = {}
        for row_id in await _write_checkpoint(db, batch):
            params = by_id[row_id]
            costs[row_id] = cost_view(params["cost"], params["seconds"], now, params["since"])
        if on_written is not None:
            on_written(costs)
        written.update(costs)
        batch.clear()

    for row in rows:
        start = max(row.billing_since, row.accrued_at) if row.accrued_at is not None else row.billing_since
        seconds = (now - start).total_seconds()
        if seconds <= 0:
            continue
        batch.append(
            {
                "row_id": row.id,
                "since": row.billing_since,
                "accrued": row.accrued_at,
                "seconds": row.billed_seconds + seconds,
                "cost": row.accrued_cost_usd + seconds / 3600.0 * (row.price_per_hour or 0.0),
                "now": now,
            }
        )
        if len(batch) == CHECKPOINT_BATCH:
            await write()
    if batch:
        await write()
    return written


async def _write_checkpoint(db: Database, batch: list[dict[str, Any]]) -> list[str]:
    """Run one batch; the ids written (all of them, unless a compare-and-set missed: then each row is
    checked, which is rare, so that only rows really written are reported)."""
    async with db.worker_write() as session:
        connection = await session.connection()
        outcome = await connection.execute(_CHECKPOINT, batch)
        if getattr(outcome, "rowcount", -1) == len(batch):
            return [params["row_id"] for params in batch]
        found = await connection.execute(
            select(_INSTANCES.c.id).where(
                _INSTANCES.c.id.in_([params["row_id"] for params in batch]), _INSTANCES.c.accrued_at == batch[0]["now"]
            )
        )
        return [found_id for (found_id,) in found]
