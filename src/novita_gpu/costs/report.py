"""Cost reports: what Novita billed over a period, per instance and per volume, and grouped (GET /api/costs,
the CLI).

A stretch's cost within [from, to) is its billed seconds inside the period times its price per hour
(the price the instance was created at, for the whole instance; a volume's price for its size at the
time, for the whole volume); a stretch still open counts up to now. Sums are taken from unrounded
figures; answers round to a millionth of a dollar.

Rows are instances and volumes (`kind`), in one list, `instances` (its name from before volumes). A
volume row carries every field an instance row does, so that a client reading rows as instance rows
keeps working: `instanceId` is the volume's id (also `volumeId`), `productName` VOLUME_PRODUCT, `gpuNum`
0, `labels` empty. `billedHours` and `gpuHours` (in totals and groups) stay instance hours, as before
volumes; volumes' billed hours are `volumeHours`. Costs (`totalUsd`, each group's `costUsd`) count both.

A stopped idle pool member's kept disk (a stretch of kind `disk`) adds to its instance's cost (`diskUsd`)
but not to its billed hours. What idle members cost is also told per pool (`pools`): their GPU time and
disks while they waited in the pool, and what the pool's idle members cost per hour now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from novita_gpu.costs.meter import Stretch, stretches
from novita_gpu.instances.rendering import iso
from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import Instance, Pool

GROUP_BY_PATTERN = r"^(product|apiKey|label:[^\x00]{1,63})$"


def month_start(at: datetime) -> datetime:
    """The first instant of `at`'s calendar month, in UTC (budgets are per calendar month in UTC)."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def next_month_start(at: datetime) -> datetime:
    start = month_start(at)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def month_key(at: datetime) -> str:
    return month_start(at).strftime("%Y-%m")


def _usd(value: float) -> float:
    return round(value, 6)


def _hours(seconds: float) -> float:
    return round(seconds / 3600.0, 6)


@dataclass
class _Line:
    """One instance's or volume's billed time and cost in the period; `stretch` is its latest stretch
    (a volume's size and price after its last resize)."""

    stretch: Stretch
    seconds: float = 0.0
    cost: float = 0.0
    billing: bool = False
    by_mode: dict[str, float] = field(default_factory=dict)  # cost by billing mode (a spot recovery's on-demand)
    disk_cost: float = 0.0

    def add(self, stretch: Stretch, seconds: float) -> None:
        cost = seconds / 3600.0 * stretch.price_per_hour
        if stretch.kind == "disk":  # an idle member's kept disk: money, not billed GPU time
            self.cost += cost
            self.disk_cost += cost
            return
        self.seconds += seconds
        self.cost += cost
        self.by_mode[stretch.billing_mode] = self.by_mode.get(stretch.billing_mode, 0.0) + cost
        self.billing = self.billing or stretch.ended_at is None
        if stretch.ended_at is None or (
            self.stretch.ended_at is not None and stretch.started_at > self.stretch.started_at
        ):
            self.stretch = stretch

    @property
    def volume(self) -> bool:
        return self.stretch.kind == "volume"


@dataclass
class _Group:
    key: str | None
    seconds: float = 0.0
    gpu_seconds: float = 0.0
    volume_seconds: float = 0.0
    cost: float = 0.0
    instances: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)


def _group_key(stretch: Stretch, group_by: str) -> str | None:
    if group_by == "product":
        return stretch.product_name
    if group_by == "apiKey":
        return stretch.owner
    return stretch.labels.get(group_by.removeprefix("label:"))


def _row(row_id: str, line: _Line, group_by: str, recoveries: int = 0) -> dict[str, Any]:
    stretch = line.stretch
    row: dict[str, Any] = {
        "kind": stretch.kind,
        "instanceId": row_id,
        "name": stretch.name,
        "apiKey": stretch.owner,
        "productName": stretch.product_name,
        "billingMode": stretch.billing_mode,
        "gpuNum": stretch.gpu_num,
        "pricePerHour": stretch.price_per_hour,
        "labels": stretch.labels,
        "group": _group_key(stretch, group_by),
        "billedHours": _hours(line.seconds),
        "billedSeconds": round(line.seconds, 3),
        "costUsd": _usd(line.cost),
        "billingNow": line.billing,
        "costByBillingMode": {mode: _usd(cost) for mode, cost in sorted(line.by_mode.items())},
    }
    if not line.volume:
        row["recoveries"] = recoveries  # spot recoveries so far: each replacement bills at its own price
        row["diskUsd"] = _usd(line.disk_cost)
    if line.volume:
        row |= {"volumeId": row_id, "region": stretch.region, "sizeGb": stretch.size_gb}
    return row


async def cost_report(
    db: Database, *, start: datetime, end: datetime, now: datetime, group_by: str, owner: str | None
) -> dict[str, Any]:
    """Totals, groups and per-instance and per-volume rows over [start, end) (an open stretch counts up to
    `now`); `owner` None covers every API key (an admin's report)."""
    lines: dict[str, _Line] = {}
    pools: dict[str, _PoolIdle] = {}
    for stretch in await stretches(db, start, end, owner):
        seconds = stretch.seconds_within(start, end, now)
        if seconds <= 0 and stretch.ended_at is not None:
            continue
        lines.setdefault(stretch.id, _Line(stretch)).add(stretch, seconds)
        if stretch.pool is not None:
            idle = pools.setdefault(stretch.pool, _PoolIdle())
            idle.add(stretch, seconds)
    groups: dict[str | None, _Group] = {}
    for row_id, line in lines.items():
        key = _group_key(line.stretch, group_by)
        group = groups.setdefault(key, _Group(key))
        group.cost += line.cost
        if line.volume:
            group.volume_seconds += line.seconds
            group.volumes.add(row_id)
        else:
            group.seconds += line.seconds
            group.gpu_seconds += line.seconds * line.stretch.gpu_num
            group.instances.add(row_id)
    instances = [line for line in lines.values() if not line.volume]
    volumes = [line for line in lines.values() if line.volume]
    recoveries = await _recoveries(db, [row_id for row_id, line in lines.items() if not line.volume])
    return {
        "from": iso(start),
        "to": iso(end),
        "asOf": iso(now),
        "groupBy": group_by,
        "currency": "USD",
        "totalUsd": _usd(sum(line.cost for line in lines.values())),
        "instancesUsd": _usd(sum(line.cost for line in instances)),
        "volumesUsd": _usd(sum(line.cost for line in volumes)),
        "billedHours": _hours(sum(line.seconds for line in instances)),
        "gpuHours": _hours(sum(line.seconds * line.stretch.gpu_num for line in instances)),
        "volumeHours": _hours(sum(line.seconds for line in volumes)),
        "groups": [
            {
                "key": group.key,
                "costUsd": _usd(group.cost),
                "billedHours": _hours(group.seconds),
                "gpuHours": _hours(group.gpu_seconds),
                "instances": len(group.instances),
                "volumeHours": _hours(group.volume_seconds),
                "volumes": len(group.volumes),
            }
            for group in sorted(groups.values(), key=lambda g: (-g.cost, g.key or ""))
        ],
        "recoveries": sum(recoveries.values()),
        "pools": await _pools_view(db, pools),
        "instances": [
            _row(row_id, line, group_by, recoveries.get(row_id, 0))
            for row_id, line in sorted(lines.items(), key=lambda item: (-item[1].cost, item[0]))
        ],
    }


@dataclass
class _PoolIdle:
    """What a pool's idle members cost in the period, and cost per hour now."""

    gpu: float = 0.0
    disk: float = 0.0
    per_hour: float = 0.0

    def add(self, stretch: Stretch, seconds: float) -> None:
        cost = seconds / 3600.0 * stretch.price_per_hour
        if stretch.kind == "disk":
            self.disk += cost
        else:
            self.gpu += cost
        if stretch.ended_at is None:
            self.per_hour += stretch.price_per_hour


async def _pools_view(db: Database, pools: dict[str, _PoolIdle]) -> list[dict[str, Any]]:
    async with db.read() as session:
        names = dict((await session.execute(select(Pool.id, Pool.name).where(Pool.id.in_(list(pools))))).tuples().all())
    return [
        {
            "poolId": pool_id,
            "pool": names.get(pool_id),
            "idleUsd": _usd(idle.gpu + idle.disk),
            "idleGpuUsd": _usd(idle.gpu),
            "idleDiskUsd": _usd(idle.disk),
            "idleUsdPerHour": _usd(idle.per_hour),
        }
        for pool_id, idle in sorted(pools.items(), key=lambda item: (-(item[1].gpu + item[1].disk), item[0]))
    ]


async def _recoveries(db: Database, instance_ids: list[str]) -> dict[str, int]:
    """Spot recoveries each instance has been through (instances/recovery.py)."""
    found: dict[str, int] = {}
    async with db.read() as session:
        for start in range(0, len(instance_ids), 500):
            chunk = instance_ids[start : start + 500]
            rows = await session.execute(select(Instance.id, Instance.recovery).where(Instance.id.in_(chunk)))
            found.update((row_id, int((recovery or {}).get("attempt", 0))) for row_id, recovery in rows)
    return found


@dataclass(frozen=True)
class Spend:
    """A key's spend this month so far, and what its instances and volumes billing now cost per hour."""

    spent: float
    rate_per_hour: float


async def month_spend(db: Database, owner: str | None, now: datetime) -> dict[str, Spend]:
    """Spend this calendar month by API key (one key, or every key with `owner` None), instances and
    volumes: an open stretch of either adds its price to the rate, which budgets project to the month's end."""
    start = month_start(now)
    found: dict[str, list[float]] = {}
    for stretch in await stretches(db, start, now, owner):
        figures = found.setdefault(stretch.owner, [0.0, 0.0])
        figures[0] += stretch.seconds_within(start, now, now) / 3600.0 * stretch.price_per_hour
        if stretch.ended_at is None:
            figures[1] += stretch.price_per_hour
    if owner is not None:
        found.setdefault(owner, [0.0, 0.0])
    return {key: Spend(spent, rate) for key, (spent, rate) in found.items()}
