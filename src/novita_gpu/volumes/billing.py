"""A volume's billed stretches: the open one on its row, closed into `volume_billing_periods` when its
size (so its price) changes and when it is deleted. A volume bills from its creation at Novita to its
deletion, mounted or not."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.kit.tables import Volume, VolumeBillingPeriod


def close_stretch(session: AsyncSession, row: Volume, now: datetime) -> None:
    """Close the open stretch (if any) at `now`, at the size and price it had."""
    if row.billing_since is not None and row.price_per_hour is not None and now > row.billing_since:
        session.add(
            VolumeBillingPeriod(
                volume_id=row.id,
                owner=row.owner,
                volume_name=row.name,
                region=row.region,
                size_gb=row.size_gb,
                price_per_hour=row.price_per_hour,
                started_at=row.billing_since,
                ended_at=now,
            )
        )
    row.billing_since = None


def reprice(session: AsyncSession, row: Volume, size_gb: int, price_per_hour: float, now: datetime) -> None:
    """The storage now has `size_gb` at `price_per_hour`: the stretch so far closes at the old price."""
    if row.billing_since is not None and (size_gb, price_per_hour) == (row.size_gb, row.price_per_hour):
        return
    close_stretch(session, row, now)
    row.size_gb, row.price_per_hour, row.billing_since = size_gb, price_per_hour, now
