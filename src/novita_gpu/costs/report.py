"""Cost reports: what Novita billed over a period, per instance and grouped (GET /api/costs, the CLI).

A stretch's cost within [from, to) is its billed seconds inside the period times its price per hour
(the price the instance was created at, for the whole instance); a stretch still open counts up to now.
Sums are taken from unrounded figures; answers round to a millionth of a dollar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from novita_gpu.costs.meter import Stretch, stretches
from novita_gpu.instances.rendering import iso
from novita_gpu.kit.db import Database

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


@dataclass
class _Line:
    """One instance's billed time and cost in the period."""

    stretch: Stretch
    seconds: float = 0.0
    cost: float = 0.0
    billing: bool = False

    def add(self, stretch: Stretch, seconds: float) -> None:
        self.seconds += seconds
        self.cost += seconds / 3600.0 * stretch.price_per_hour
        self.billing = self.billing or stretch.ended_at is None


@dataclass
class _Group:
    key: str | None
    seconds: float = 0.0
    gpu_seconds: float = 0.0
    cost: float = 0.0
    instances: set[str] = field(default_factory=set)


def _group_key(stretch: Stretch, group_by: str) -> str | None:
    if group_by == "product":
        return stretch.product_name
    if group_by == "apiKey":
        return stretch.owner
    return stretch.labels.get(group_by.removeprefix("label:"))


async def cost_report(
    db: Database, *, start: datetime, end: datetime, now: datetime, group_by: str, owner: str | None
) -> dict[str, Any]:
    """Totals, groups and per-instance rows over [start, end) (an open stretch counts up to `now`);
    `owner` None covers every API key (an admin's report)."""
    lines: dict[str, _Line] = {}
    for stretch in await stretches(db, start, end, owner):
        seconds = stretch.seconds_within(start, end, now)
        if seconds <= 0 and stretch.ended_at is not None:
            continue
        lines.setdefault(stretch.instance_id, _Line(stretch)).add(stretch, seconds)
    groups: dict[str | None, _Group] = {}
    for instance_id, line in lines.items():
        group = groups.setdefault(_group_key(line.stretch, group_by), _Group(_group_key(line.stretch, group_by)))
        group.seconds += line.seconds
        group.gpu_seconds += line.seconds * line.stretch.gpu_num
        group.cost += line.cost
        group.instances.add(instance_id)
    total = sum(line.cost for line in lines.values())
    return {
        "from": iso(start),
        "to": iso(end),
        "asOf": iso(now),
        "groupBy": group_by,
        "currency": "USD",
        "totalUsd": _usd(total),
        "billedHours": round(sum(line.seconds for line in lines.values()) / 3600.0, 6),
        "gpuHours": round(sum(line.seconds * line.stretch.gpu_num for line in lines.values()) / 3600.0, 6),
        "groups": [
            {
                "key": group.key,
                "costUsd": _usd(group.cost),
                "billedHours": round(group.seconds / 3600.0, 6),
                "gpuHours": round(group.gpu_seconds / 3600.0, 6),
                "instances": len(group.instances),
            }
            for group in sorted(groups.values(), key=lambda g: (-g.cost, g.key or ""))
        ],
        "instances": [
            {
                "instanceId": instance_id,
                "name": line.stretch.instance_name,
                "apiKey": line.stretch.owner,
                "productName": line.stretch.product_name,
                "billingMode": line.stretch.billing_mode,
                "gpuNum": line.stretch.gpu_num,
                "pricePerHour": line.stretch.price_per_hour,
                "labels": line.stretch.labels,
                "group": _group_key(line.stretch, group_by),
                "billedHours": round(line.seconds / 3600.0, 6),
                "costUsd": _usd(line.cost),
                "billingNow": line.billing,
            }
            for instance_id, line in sorted(lines.items(), key=lambda item: (-item[1].cost, item[0]))
        ],
    }


@dataclass(frozen=True)
class Spend:
    """A key's spend this month so far, and what its instances billing now cost per hour."""

    spent: float
    rate_per_hour: float


async def month_spend(db: Database, owner: str | None, now: datetime) -> dict[str, Spend]:
    """Spend this calendar month by API key (one key, or every key with `owner` None)."""
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
