"""Status changes: every change writes an event and its webhook deliveries in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.instances.lifecycle import Status
from novita_gpu.instances.models import Instance, InstanceEvent
from novita_gpu.instances.view import iso, webhook_data
from novita_gpu.webhooks.models import WebhookDelivery


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
) -> InstanceEvent:
    """Move `row` to `to`, record why, and queue one webhook per target (the outbox)."""
    previous = row.status or None
    row.status = to
    row.status_reason = reason
    row.status_message = message
    row.updated_at = now
    event = InstanceEvent(
        instance_id=row.id, created_at=now, from_status=previous, to_status=to, reason=reason, message=message
    )
    session.add(event)
    targets = webhook_targets(row, default_webhook_url)
    if targets:
        await session.flush()  # the deliveries refer to the event's id
    for url in targets:
        session.add(
            WebhookDelivery(
                id=f"msg_{uuid.uuid4().hex}",
                instance_id=row.id,
                event_id=event.id,
                url=url,
                event=f"instance.{to}",
                payload={
                    "event": f"instance.{to}",
                    "instanceId": row.id,
                    "name": row.name,
                    "status": str(to),
                    "previousStatus": previous,
                    "timestamp": iso(now),
                    "data": webhook_data(row),
                },
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return event
