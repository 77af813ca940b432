"""What the audit tests share: an owner key, keys made over HTTP, calls under a key, and the trail as read
over HTTP (validated against its answer model) or straight from the store."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from novita_gpu.audit.schemas import AuditPageAnswer
from novita_gpu.kit.tables import AuditEvent
from tests.harness import SEED_BODY, Harness

OWNER = "owner-key-0123456789"


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def call(h: Harness, secret: str | None, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    headers = {**(auth(secret) if secret else {}), **kw.pop("headers", {})}
    return await h.http.request(method, path, json=body, headers=headers, **kw)


async def team(h: Harness, name: str) -> str:
    made = await call(h, OWNER, "POST", "/api/teams", {"name": name})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def key(h: Harness, team: str, role: str, name: str) -> dict[str, Any]:
    """A stored key ({id, secret, ...}), made by the owner key."""
    made = await call(h, OWNER, "POST", "/api/keys", {"name": name, "team": team, "role": role})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def create(
    h: Harness, secret: str, name: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return await call(h, secret, "POST", "/api/instances", {**SEED_BODY, "name": name, **body}, headers=headers or {})


async def page(h: Harness, secret: str | None, **params: Any) -> dict[str, Any]:
    """One page of GET /api/audit, which must answer 200 as its model says."""
    answer = await call(h, secret, "GET", "/api/audit", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    AuditPageAnswer.model_validate(body)
    return body


async def events(h: Harness, secret: str | None = OWNER, **params: Any) -> list[dict[str, Any]]:
    """Every event the key may read (with the filters), newest first, page after page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        shown = await page(h, secret, **params, **({"cursor": cursor} if cursor else {}))
        found += shown["events"]
        cursor = shown["nextCursor"]
        if cursor is None:
            return found


async def stored(h: Harness) -> list[AuditEvent]:
    """Every row of the store's audit table, oldest first."""
    async with h.services.db.read() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())
