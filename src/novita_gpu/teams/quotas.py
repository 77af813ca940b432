"""A team's quotas, checked in the transaction that would exceed them (a create, a start).

Race-free across replicas: the check locks the team's row first (PostgreSQL: SELECT ... FOR UPDATE; SQLite
has one writer at a time), so two creates of one team are checked one after the other, each seeing the
other's instance. What counts as held: instances that are not stopped, terminated or failed, their GPUs
and their hourly prices (a create not yet placed counts at the price of its first offer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.instances.lifecycle import Status
from novita_gpu.kit.errors import Forbidden
from novita_gpu.kit.tables import Instance, Team

NOT_HELD = (Status.STOPPED, Status.TERMINATED, Status.FAILED)


@dataclass(frozen=True)
class Held:
    gpus: int
    usd_per_hour: float


async def held(session: AsyncSession, team: str) -> Held:
    """What the team's instances hold now."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(Instance.gpu_num), 0), func.coalesce(func.sum(Instance.price_per_hour), 0.0)
            ).where(Instance.owner == team, Instance.status.not_in([str(s) for s in NOT_HELD]))
        )
    ).one()
    return Held(int(row[0]), float(row[1]))


class QuotaExceeded(Forbidden):
    """403 QUOTA_EXCEEDED, with the quota, the team's use and the request's share (in `details`)."""

    default_code = "QUOTA_EXCEEDED"

    def __init__(self, quota: str, limit: float, use: float, request: float) -> None:
        super().__init__(
            f"The team's quota {quota} is {limit:g}: it holds {use:g} and this asks for {request:g} more.",
            details=[
                {"field": quota, "message": f"limit {limit:g}, in use {use:g}, requested {request:g}"},
            ],
        )


async def enforce(session: AsyncSession, team: str, gpus: int, usd_per_hour: float, *, lock: bool) -> None:
    """Refuse (QuotaExceeded) what would take the team past a quota; `lock`: the store locks rows."""
    query = select(Team.quotas).where(Team.id == team)
    quotas: dict[str, Any] | None = await session.scalar(query.with_for_update() if lock else query)
    if not quotas or (quotas.get("maxGpus") is None and quotas.get("maxUsdPerHour") is None):
        return
    use = await held(session, team)
    max_gpus = quotas.get("maxGpus")
    if max_gpus is not None and use.gpus + gpus > max_gpus:
        raise QuotaExceeded("maxGpus", max_gpus, use.gpus, gpus)
    max_usd = quotas.get("maxUsdPerHour")
    if max_usd is not None and use.usd_per_hour + usd_per_hour > max_usd + 1e-9:
        raise QuotaExceeded("maxUsdPerHour", max_usd, round(use.usd_per_hour, 6), round(usd_per_hour, 6))
