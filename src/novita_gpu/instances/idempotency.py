"""Idempotency-Key: a create repeated with the same key answers as the first one did, and never makes a
second instance; the same key with another body is a conflict. The first answer is kept for
IDEMPOTENCY_TTL_SECONDS, written in the create's own transaction.

The record is read and written in Core: through the ORM's session (`get`, `add`) it was the larger part of
a create's CPU (docs/performance.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from novita_gpu.instances.schemas import CreateInstanceIn
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.errors import IdempotencyConflict
from novita_gpu.kit.tables import IdempotencyRecord

_KEY = (IdempotencyRecord.owner == bindparam("owner"), IdempotencyRecord.key == bindparam("key"))
_RECORD = select(
    IdempotencyRecord.request_hash,
    IdempotencyRecord.status_code,
    IdempotencyRecord.response,
    IdempotencyRecord.created_at,
).where(*_KEY)
_DELETE_RECORD = delete(IdempotencyRecord).where(*_KEY)
_INSERT_RECORD = insert(IdempotencyRecord)


@dataclass(frozen=True, slots=True)
class CreateResult:
    """A create's answer. `replayed_status` is None for a new instance; for a repeat of an earlier create
    with the same Idempotency-Key, the status the first answer had (a replay answers as that one did)."""

    answer: dict[str, Any]
    replayed_status: int | None = None


def request_hash(body: CreateInstanceIn) -> str:
    dumped = body.model_dump(mode="json")
    # Unset, a body hashes as before these existed (an Idempotency-Key keeps replaying across upgrades).
    for added in ("image_auth_id", "network_storages", "auto_stop", "max_runtime_minutes", "volumes", "pool"):
        if not dumped[added]:
            del dumped[added]
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, db: Database, clock: Clock, ttl_seconds: float) -> None:
        self.db = db
        self.clock = clock
        self.ttl = timedelta(seconds=ttl_seconds)

    async def replay_of(self, owner: str, key: str, hashed: str) -> CreateResult | None:
        """The first answer given to this key, read outside any write; None if there is none."""
        found = await self.db.fetch(_RECORD, {"owner": owner, "key": key})
        return self._replay(found[0] if found else None, hashed)

    async def claim(self, conn: AsyncConnection, owner: str, key: str, hashed: str) -> CreateResult | None:
        """Inside the create's transaction: the first answer to repeat, or None when this create takes the key
        (an expired record is deleted, so the create takes it anew)."""
        stored = (await conn.execute(_RECORD, {"owner": owner, "key": key})).one_or_none()
        if stored is not None and self._expired(stored):
            await conn.execute(_DELETE_RECORD, {"owner": owner, "key": key})
        return self._replay(stored, hashed)

    async def remember(
        self, conn: AsyncConnection, owner: str, key: str, hashed: str, response: dict[str, Any], now: datetime
    ) -> None:
        """Keep the first answer (201: its HTTP status, which a replay repeats), in the create's transaction."""
        record = {"request_hash": hashed, "status_code": 201, "response": response, "created_at": now}
        await conn.execute(_INSERT_RECORD, {"owner": owner, "key": key, **record})

    def _expired(self, record: Row[Any]) -> bool:
        return bool(record.created_at < self.clock.now() - self.ttl)

    def _replay(self, record: Row[Any] | None, hashed: str) -> CreateResult | None:
        """A stored first answer repeated (IdempotencyConflict if the key came with another body); None when
        there is none, or it expired."""
        if record is None or self._expired(record):
            return None
        if record.request_hash != hashed:
            raise IdempotencyConflict()
        return CreateResult(record.response, replayed_status=record.status_code)
