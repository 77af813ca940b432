"""API keys: who a presented key is (its team and role), for keys of the environment and keys in the store.

A stored key's secret is `ngk_` and 43 URL-safe characters (256 random bits); the store keeps only its
SHA-256 (a secret that random needs no slow hash) and the first 12 characters, to recognise it. Who a
digest is, is kept in memory for CACHE_SECONDS (found or not), so a request costs no store read, while a
revoke, an expiry or a rotation's end reaches every replica within that (docs/teams.md).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from sqlalchemy import or_, select, update

from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import ApiKey, Team

Role = Literal["viewer", "member", "admin", "owner"]
ROLES: tuple[Role, ...] = get_args(Role)
SECRET_PREFIX = "ngk_"
SHOWN_PREFIX = 12  # characters of a secret kept and shown: ngk_ and 8 more
CACHE_SECONDS = 1.0
OPEN_KEY_ID = "default"  # the one principal of a service without any key (web/auth.py)
_LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


def rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def environment_key_id(key: str) -> str:
    """The id of a key of API_KEYS or ADMIN_API_KEYS, and of its team: shown in reports and audit rows,
    never the key itself."""
    return f"key-{digest(key)[:12]}"


@dataclass(frozen=True)
class Principal:
    """Who a request is: the team whose instances and volumes it sees (their `owner`), the key, its role."""

    team: str
    key_id: str
    key_name: str
    role: Role

    def may(self, role: Role) -> bool:
        return rank(self.role) >= rank(role)

    @property
    def owner(self) -> str:  # the rows' word for the team
        return self.team

    @property
    def admin(self) -> bool:
        """An owner key: it may act in every team (ADMIN_API_KEYS, or a stored key of role owner)."""
        return self.role == "owner"


class KeyStore:
    """Stored keys by the digest of their secret, each answer cached CACHE_SECONDS."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._found: dict[str, tuple[float, Principal | None]] = {}
        self._any: tuple[float, bool] = (float("-inf"), False)

    def cached(self, key_digest: str) -> tuple[bool, Principal | None]:
        """Whether a digest's answer is cached, and the answer (a Principal, or None: not a live key)."""
        entry = self._found.get(key_digest)
        if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
            return False, None
        return True, entry[1]

    async def find(self, key_digest: str) -> Principal | None:
        """The live key with this secret (or the previous secret of a key rotated within its grace)."""
        hit, cached = self.cached(key_digest)
        if hit:
            return cached
        now = self.clock.now()
        query = (
            select(ApiKey, Team.name)
            .join(Team, Team.id == ApiKey.team_id)
            .where(
                or_(
                    ApiKey.secret_hash == key_digest,
                    (ApiKey.previous_hash == key_digest) & (ApiKey.previous_valid_until > now),
                ),
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )
        async with self.db.read() as session:
            found = (await session.execute(query)).first()
        principal = None
        if found is not None:
            key = found[0]
            principal = Principal(key.team_id, key.id, key.name, key.role)
            if key.last_used_at is None or key.last_used_at < now - _LAST_USED_EVERY:
                await self._used(key.id, now)
        if len(self._found) > 10_000:  # bounded: presented digests are the caller's choice
            self._found.clear()
        self._found[key_digest] = (time.monotonic(), principal)
        return principal

    async def _used(self, key_id: str, now: datetime) -> None:
        async with self.db.write() as session:
            await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))

    def any_cached(self) -> bool | None:
        """Whether the store holds any key (cached), None when not known lately."""
        at, found = self._any
        return found if time.monotonic() - at <= CACHE_SECONDS else None

    async def any_keys(self) -> bool:
        """Whether the store holds any key at all, revoked ones included: once one was made, keys are
        required (the service is no longer open to every local caller)."""
        cached = self.any_cached()
        if cached is not None:
            return cached
        async with self.db.read() as session:
            found = await session.scalar(select(ApiKey.id).limit(1)) is not None
        self._any = (time.monotonic(), found)
        return found

    def forget(self) -> None:
        """Drop every cached answer (a key was made, rotated or revoked here: seen at once on this replica)."""
        self._found.clear()
        self._any = (float("-inf"), False)
