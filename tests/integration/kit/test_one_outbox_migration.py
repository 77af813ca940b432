"""Migration 0009 (one outbox): a store at 0008 holding a budget.exceeded still owed to its receiver, written
as 0008's budget worker wrote it (account_webhooks), has it delivered by the webhook dispatcher after the
upgrade, under the same webhook-id, with the key's event history intact; the instances' delivery history
survives the rebuild of webhook_deliveries on SQLite; and a downgrade gives 0008 its table back. On SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from novita_gpu.kit.db import UTCDateTime
from novita_gpu.kit.migrations import alembic_config
from novita_gpu.kit.tables import WebhookDelivery
from novita_gpu.web.auth import owner_id
from novita_gpu.webhooks.signing import verify
from tests.fixtures.databases import fresh_database
from tests.harness import Harness
from tests.integration.webhooks.test_account_webhooks import (
    ALICE,
    LIFECYCLE,
    SECRET,
    Receiver,
    budget_events,
    drain,
    key,
    keyed,
    ready,
)

PENDING_ID = "msg_" + "0" * 31 + "1"
DELIVERED_ID = "msg_" + "0" * 31 + "2"

# The 0008 tables as its budget worker wrote them.
account_events_0008 = sa.table(
    "account_events",
    sa.column("id", sa.Integer()),
    sa.column("owner", sa.String()),
    sa.column("event", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("payload", sa.JSON()),
)
account_webhooks_0008 = sa.table(
    "account_webhooks",
    *(sa.column(name, sa.String()) for name in ("id", "owner", "url", "event", "status", "last_error", "lease_token")),
    *(sa.column(name, sa.Integer()) for name in ("event_id", "attempts", "last_status_code")),
    *(sa.column(name, UTCDateTime()) for name in ("next_attempt_at", "created_at", "delivered_at", "lease_expires_at")),
    sa.column("payload", sa.JSON()),
)


@pytest.fixture(params=["sqlite", "postgres"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with fresh_database(request.param, tmp_path) as url:
        harness = await keyed(tmp_path, database_url=url).start()
        try:
            yield harness
        finally:
            await harness.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def migrate(h: Harness, revision: str) -> None:
    """The store to `revision`, up or down, as `novita-gpu db upgrade` (or a developer's alembic) does."""

    def run(connection: Connection) -> None:
        config = alembic_config(connection)
        current = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        (command.upgrade if revision > current else command.downgrade)(config, revision)

    async with h.services.db.engine.begin() as conn:
        await conn.run_sync(run)


async def rows(h: Harness, query: str) -> list[Any]:
    async with h.services.db.engine.connect() as conn:
        return list((await conn.execute(sa.text(query))).all())


async def history(h: Harness, instance_id: str) -> list[list[tuple[int | None, str | None]]]:
    """Each delivery's attempts (status code, error), in event order."""
    answer = await h.http.get(f"/api/instances/{instance_id}/events", headers=key(ALICE))
    assert answer.status_code == 200, answer.text
    return [
        [(a["statusCode"], a["error"]) for a in delivery["history"]]
        for event in answer.json()["events"]
        for delivery in event["webhooks"]
    ]


async def test_a_budget_exceeded_owed_at_0008_is_delivered_after_the_upgrade(h: Harness, receiver: Receiver) -> None:
    instance_id = await ready(h, webhookUrl=receiver.url)
    await drain(h)
    delivered_history = [[(200, None)]] * len(LIFECYCLE)
    assert await history(h, instance_id) == delivered_history
    receiver.hits.clear()

    await migrate(h, "0008")
    now = h.clock.now()
    payload = {
        "event": "budget.exceeded",
        "apiKey": owner_id(ALICE),
        "timestamp": "2026-01-01T00:10:00Z",
        "data": {"month": "2026-01", "monthlyLimitUsd": 0.01, "spentUsd": 0.05, "onExceeded": "refuseCreates"},
    }
    common = {
        "owner": owner_id(ALICE),
        "event": "budget.exceeded",
        "payload": payload,
        "event_id": 1,
        "last_status_code": None,
        "last_error": None,
        "delivered_at": None,
        "lease_token": None,
        "lease_expires_at": None,
    }
    async with h.services.db.engine.begin() as conn:
        await conn.execute(
            sa.insert(account_events_0008),
            {"id": 1, "owner": owner_id(ALICE), "event": "budget.exceeded", "created_at": now, "payload": payload},
        )
        await conn.execute(
            sa.insert(account_webhooks_0008),
            [
                {  # refused once while its receiver was down, retried now
                    **common,
                    "id": PENDING_ID,
                    "url": receiver.url,
                    "status": "pending",
                    "attempts": 1,
                    "last_error": "could not connect",
                    "next_attempt_at": now,
                    "created_at": now - timedelta(seconds=60),
                },
                {  # the operator's receiver had it at once
                    **common,
                    "id": DELIVERED_ID,
                    "url": "https://hooks.example.com/all",
                    "status": "delivered",
                    "attempts": 1,
                    "last_status_code": 200,
                    "next_attempt_at": now - timedelta(seconds=60),
                    "created_at": now - timedelta(seconds=60),
                    "delivered_at": now - timedelta(seconds=60),
                },
            ],
        )
    await migrate(h, "head")

    [event] = await budget_events(h)
    before = {d["deliveryId"]: d for d in event["webhooks"]}
    assert (before[PENDING_ID]["status"], before[PENDING_ID]["attempts"]) == ("pending", 1)
    assert before[PENDING_ID]["lastError"] == "could not connect"
    assert (before[DELIVERED_ID]["status"], before[DELIVERED_ID]["url"]) == (
        "delivered",
        "https://hooks.example.com/all",
    )
    assert event["payload"] == payload

    assert await h.services.dispatcher.tick() == 1  # the one owed
    [(headers, body)] = receiver.hits
    assert headers["webhook-id"] == PENDING_ID and headers["x-webhook-event"] == "budget.exceeded"
    assert verify(SECRET, headers, body, now=int(h.clock.now().timestamp()))
    assert json.loads(body) == payload
    after = {d["deliveryId"]: d for d in (await budget_events(h))[0]["webhooks"]}
    assert (after[PENDING_ID]["status"], after[PENDING_ID]["attempts"]) == ("delivered", 2)
    assert after[DELIVERED_ID] == before[DELIVERED_ID]
    assert await history(h, instance_id) == delivered_history  # the rebuild on SQLite kept every attempt
    assert (await h.http.get("/api/metrics", headers=key(ALICE))).json()["webhooks"]["delivered"] == 6

    # Down again: 0008's budget worker finds its rows, and instance deliveries keep their attempts.
    await migrate(h, "0008")
    kept = await rows(h, "SELECT id, owner, status, attempts FROM account_webhooks ORDER BY id")
    assert [tuple(row) for row in kept] == [
        (PENDING_ID, owner_id(ALICE), "delivered", 2),
        (DELIVERED_ID, owner_id(ALICE), "delivered", 1),
    ]
    [(attempts,)] = await rows(h, "SELECT COUNT(*) FROM webhook_attempts")
    assert attempts == len(LIFECYCLE)
    await migrate(h, "head")
    assert {d["deliveryId"]: d for d in (await budget_events(h))[0]["webhooks"]} == after
    assert await history(h, instance_id) == delivered_history


async def test_a_delivery_without_an_event_is_refused(h: Harness) -> None:
    """The check of revision 0009: a delivery is of an instance's event or of a key's, never of none."""
    now = h.clock.now()
    row = {
        "id": "msg_of_nothing",
        "url": "https://hooks.example.com/",
        "event": "budget.exceeded",
        "payload": {},
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    with pytest.raises(IntegrityError):
        async with h.services.db.write() as session:
            await session.execute(sa.insert(WebhookDelivery), row)
