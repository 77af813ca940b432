"""Status changes: every change writes an event and its webhook deliveries in the caller's transaction.

Event and outbox rows are written with plain INSERT statements rather than through the ORM's unit of
work (nothing reads them back in the same transaction): a status change is the most frequent write,
and the unit of work cost more than the statements themselves. The instance row must already exist.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.instances.lifecycle import Status
from novita_gpu.instances.rendering import event_payload
from novita_gpu.kit.db import table_of
from novita_gpu.kit.tables import Instance, InstanceEvent, WebhookDelivery

# Table-level (Core) statements: the ORM's bulk-insert path costs more than the unit of work it replaces.
_INSERT_EVENT = insert(table_of(InstanceEvent)).returning(table_of(InstanceEvent).c.id)
_INSERT_DELIVERY = insert(table_of(WebhookDelivery))


def webhook_targets(row: Instance, default_url: str | None) -> list[str]:
    return list(dict.fromkeys(url for url in (row.webhook_url, default_url) if url))


async def change_status(
    session: AsyncSession,
    row: Instance,
    to: Status,
    *,
    now: datetime,
    default_webhook_url: str | None,
    reason: str | None = None,
    message: str | None = None,
    event: str | None = None,
) -> None:
    """Move `row` to `to`, record why, and queue one webhook per target (the outbox). `event`: its name
    when not `instance.<to>` (also for an event that changes no status: `to` is the current one)."""
    previous = row.status or None
    row.status = to
    row.status_reason = reason
    row.status_message = message
    row.updated_at = now
    await record_change(session, row, previous, now=now, default_webhook_url=default_webhook_url, event=event)


async def record_change(
    session: AsyncSession,
    row: Instance,
    previous: str | None,
    *,
    now: datetime,
    default_webhook_url: str | None,
    event: str | None = None,
) -> None:
    """Write the event of `row`'s move from `previous` to its current status, and its webhook rows."""
    to = Status(row.status)
    payload = event_payload(row, previous, now, event)
    event_id = await session.scalar(
        _INSERT_EVENT,
        {
            "instance_id": row.id,
            "created_at": now,
            "from_status": previous,
            "to_status": to,
            "reason": row.status_reason,
            "message": row.status_message,
            "payload": payload,  # the event stream sends this same body, also when it is replayed later
        },
    )
    targets = webhook_targets(row, default_webhook_url)
    if not targets:
        return
    await session.execute(
        _INSERT_DELIVERY,
        [
            {
                "id": f"msg_{uuid.uuid4().hex}",
                "instance_id": row.id,
                "event_id": event_id,
                "url": url,
                "event": payload["event"],
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for url in targets
        ],
    )
