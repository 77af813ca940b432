"""Teams and their keys: made, listed, changed, rotated and revoked, each by whom its role allows.

Who may do what (docs/teams.md): any key reads its own team; an admin changes its team (name, quotas, its
budget as `monthlyBudgetUsd`) and makes, rotates and revokes its team's keys, of roles up to admin; an
owner does all of it in every team, makes teams, and makes keys of any role. A team or key the caller may
not see answers as if it did not exist.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.costs.budgets import Budgets
from novita_gpu.costs.report import month_spend
from novita_gpu.kit.clock import Clock, iso
from novita_gpu.kit.db import Database
from novita_gpu.kit.errors import DomainError, Forbidden, KeyNotFound, NameTaken, TeamNotFound
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import ApiKey, Team
from novita_gpu.teams.keys import OPEN_KEY_ID, SHOWN_PREFIX, KeyStore, Principal, digest, new_secret, rank
from novita_gpu.teams.quotas import held
from novita_gpu.teams.schemas import KeyIn, TeamUpdateIn


class TeamNameTaken(NameTaken):
    def __init__(self, name: str) -> None:
        if reserved(name):
            message = f"{name!r} is the service's own: 'default' and names starting with 'key-' name its teams."
        else:
            message = f"A team named {name!r} already exists; team names are unique."
        DomainError.__init__(self, message)


def reserved(name: str) -> bool:
    """`default` and `key-...` name the teams the service makes itself (no keys; keys of API_KEYS), so
    they are taken for every other team, made or renamed, whether or not the service has made them yet."""
    return name == "default" or name.startswith("key-")


def _forbid(principal: Principal, doing: str, role: str) -> Forbidden:
    return Forbidden(f"This key's role ({principal.role}) may not {doing}; it takes {role}.")


def key_view(key: ApiKey, team_name: str) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "team": key.team_id,
        "teamName": team_name,
        "role": key.role,
        "createdAt": iso(key.created_at),
        "createdBy": key.created_by,
        "rotatedAt": iso(key.rotated_at),
        "lastUsedAt": iso(key.last_used_at),
        "expiresAt": iso(key.expires_at),
        "revokedAt": iso(key.revoked_at),
        "previousValidUntil": iso(key.previous_valid_until),
    }


async def ensure_teams(db: Database, clock: Clock, team_ids: list[str]) -> None:
    """Make the teams of the environment's keys (and "default") that the store does not have yet. Replicas
    starting together may race: one makes them, and the others find them made."""
    now = clock.now()
    try:
        async with db.write() as session:
            known = set(await session.scalars(select(Team.id).where(Team.id.in_(team_ids))))
            for team_id in team_ids:
                if team_id not in known:
                    session.add(Team(id=team_id, name=team_id, quotas={}, created_at=now, updated_at=now))
    except IntegrityError:
        async with db.read() as session:
            made = set(await session.scalars(select(Team.id).where(Team.id.in_(team_ids))))
        if made != set(team_ids):  # not a race: a team of that name exists (made by a user)
            raise


async def new_key(
    session: AsyncSession,
    clock: Clock,
    *,
    team: Team,
    name: str,
    role: str,
    expires_at: Any,
    created_by: str | None,
) -> tuple[ApiKey, str]:
    """A key of `team`, added to the session; and its secret (shown this once)."""
    secret = new_secret()
    key = ApiKey(
        id=f"ak_{uuid.uuid4().hex[:20]}",
        team_id=team.id,
        name=name,
        role=role,
        prefix=secret[:SHOWN_PREFIX],
        secret_hash=digest(secret),
        created_at=clock.now(),
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(key)
    return key, secret


def keys_query() -> Select[tuple[ApiKey, str]]:
    """Keys with their team's name, oldest first (the API and `novita-gpu keys` list them so)."""
    return select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id)


def revoke(key: ApiKey, now: datetime) -> None:
    """Refuse the key from now on, its rotated secret's grace included (a second revoke changes nothing)."""
    if key.revoked_at is None:
        key.revoked_at = now
        key.previous_valid_until = None


class TeamService:
    def __init__(self, db: Database, clock: Clock, settings: Settings, keys: KeyStore, budgets: Budgets) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.keys = keys
        self.budgets = budgets

    # -- teams -----------------------------------------------------------------------------------

    async def _team(self, session: AsyncSession, principal: Principal, ref: str, *, lock: bool = False) -> Team:
        query = select(Team).where(or_(Team.id == ref, Team.name == ref))
        team = await session.scalar(query.with_for_update() if lock and self.db.locks_rows else query)
        if team is None or (team.id != principal.team and not principal.admin):
            raise TeamNotFound(ref)
        return team

    async def create_team(self, principal: Principal, name: str) -> dict[str, Any]:
        if not principal.admin:
            raise _forbid(principal, "make teams", "owner")
        if reserved(name):
            raise TeamNameTaken(name)
        now = self.clock.now()
        team = Team(id=f"team_{uuid.uuid4().hex[:16]}", name=name, quotas={}, created_at=now, updated_at=now)
        try:
            async with self.db.write() as session:
                session.add(team)
        except IntegrityError as exc:
            raise TeamNameTaken(name) from exc
        return await self.view(principal, team.id)

    async def list_teams(self, principal: Principal) -> dict[str, Any]:
        async with self.db.read() as session:
            query = select(Team.id).order_by(Team.name)
            if not principal.admin:
                query = query.where(Team.id == principal.team)
            ids = list(await session.scalars(query))
        return {"teams": [await self.view(principal, team_id) for team_id in ids]}

    async def view(self, principal: Principal, ref: str) -> dict[str, Any]:
        """The team, its quotas, and its use against each."""
        async with self.db.read() as session:
            team = await self._team(session, principal, ref)
            use = await held(session, team.id)
            keys = await session.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.team_id == team.id, ApiKey.revoked_at.is_(None))
            )
        budget = await self.budgets.view(team.id)
        spent = (await month_spend(self.db, team.id, self.clock.now()))[team.id].spent
        quotas = team.quotas or {}
        return {
            "id": team.id,
            "name": team.name,
            "quotas": {
                "maxGpus": quotas.get("maxGpus"),
                "maxUsdPerHour": quotas.get("maxUsdPerHour"),
                "monthlyBudgetUsd": budget["monthlyLimitUsd"],
            },
            "use": {
                "gpus": {"limit": quotas.get("maxGpus"), "used": use.gpus},
                "usdPerHour": {"limit": quotas.get("maxUsdPerHour"), "used": round(use.usd_per_hour, 6)},
                "monthUsd": {"limit": budget["monthlyLimitUsd"], "used": round(spent, 6)},
            },
            "keys": keys or 0,
            "createdAt": iso(team.created_at),
            "updatedAt": iso(team.updated_at),
        }

    async def update(self, principal: Principal, ref: str, body: TeamUpdateIn) -> dict[str, Any]:
        if not principal.may("admin"):
            raise _forbid(principal, "change the team", "admin")
        budget: float | bool | None = False  # False: not asked
        try:
            async with self.db.write() as session:
                team = await self._team(session, principal, ref, lock=True)
                if body.name is not None and body.name != team.name:
                    if reserved(body.name):
                        raise TeamNameTaken(body.name)
                    team.name = body.name
                if body.quotas is not None:
                    given = body.quotas.model_fields_set
                    quotas = dict(team.quotas or {})
                    for field, key in (("max_gpus", "maxGpus"), ("max_usd_per_hour", "maxUsdPerHour")):
                        if field in given:
                            quotas[key] = getattr(body.quotas, field)
                    team.quotas = quotas
                    if "monthly_budget_usd" in given:
                        budget = body.quotas.monthly_budget_usd
                team.updated_at = self.clock.now()
                team_id = team.id
        except IntegrityError as exc:
            raise TeamNameTaken(body.name or ref) from exc
        if budget is None:
            await self.budgets.delete(team_id, by_admin=principal.admin)
        elif budget is not False:
            current = await self.budgets.view(team_id)
            await self.budgets.put(
                team_id,
                limit=float(budget),
                on_exceeded=current["onExceeded"] or "refuseCreates",
                webhook_url=current["webhookUrl"],
                by_admin=principal.admin and team_id != principal.team,
            )
        return await self.view(principal, team_id)

    # -- keys ------------------------------------------------------------------------------------

    async def create_key(self, principal: Principal, body: KeyIn) -> dict[str, Any]:
        if principal.key_id == OPEN_KEY_ID:
            # Without any key, every local caller is the owner; the first key is made on the server, where
            # it is clear that from then on every request needs one.
            raise Forbidden(
                "This service has no API keys yet: make the first one on the server with "
                "`novita-gpu keys create --team NAME --role admin --name NAME` (docs/teams.md)."
            )
        if not principal.may("admin"):
            raise _forbid(principal, "make keys", "admin")
        if rank(body.role) > rank(principal.role):
            raise _forbid(principal, f"make a key of role {body.role}", body.role)
        async with self.db.write() as session:
            team = await self._team(session, principal, body.team or principal.team)
            key, secret = await new_key(
                session,
                self.clock,
                team=team,
                name=body.name,
                role=body.role,
                expires_at=body.expires_at,
                created_by=principal.key_id,
            )
            view = key_view(key, team.name)
        self.keys.forget()
        return {**view, "secret": secret}

    async def list_keys(self, principal: Principal, team: str | None) -> dict[str, Any]:
        if not principal.may("admin"):
            raise _forbid(principal, "see the team's keys", "admin")
        query = keys_query().order_by(ApiKey.created_at.desc())
        async with self.db.read() as session:
            if team is not None:
                query = query.where(ApiKey.team_id == (await self._team(session, principal, team)).id)
            elif not principal.admin:
                query = query.where(ApiKey.team_id == principal.team)
            rows = (await session.execute(query)).all()
        return {"keys": [key_view(key, name) for key, name in rows]}

    async def _key(self, session: AsyncSession, principal: Principal, key_id: str) -> tuple[ApiKey, str]:
        found = (await session.execute(keys_query().where(ApiKey.id == key_id))).first()
        if not principal.may("admin") or found is None:
            raise KeyNotFound(key_id)
        key, team_name = found
        if key.team_id != principal.team and not principal.admin:
            raise KeyNotFound(key_id)
        if rank(key.role) > rank(principal.role):
            raise _forbid(principal, f"manage a key of role {key.role}", key.role)
        return key, team_name

    async def rotate_key(self, principal: Principal, key_id: str) -> dict[str, Any]:
        """A new secret; the old one keeps working KEY_ROTATION_GRACE_SECONDS."""
        now = self.clock.now()
        async with self.db.write() as session:
            key, team_name = await self._key(session, principal, key_id)
            if key.revoked_at is not None:
                raise KeyNotFound(key_id)
            secret = new_secret()
            key.previous_hash = key.secret_hash
            key.previous_valid_until = now + timedelta(seconds=self.settings.key_rotation_grace_seconds)
            key.secret_hash = digest(secret)
            key.prefix = secret[:SHOWN_PREFIX]
            key.rotated_at = now
            view = key_view(key, team_name)
        self.keys.forget()
        return {**view, "secret": secret}

    async def revoke_key(self, principal: Principal, key_id: str) -> dict[str, Any]:
        """Refused from now on, by every replica within the key cache's second."""
        now = self.clock.now()
        async with self.db.write() as session:
            key, team_name = await self._key(session, principal, key_id)
            revoke(key, now)
            view = key_view(key, team_name)
        self.keys.forget()
        return view

    async def me(self, principal: Principal) -> dict[str, Any]:
        async with self.db.read() as session:
            name = await session.scalar(select(Team.name).where(Team.id == principal.team))
        return {
            "team": principal.team,
            "teamName": name,
            "keyId": principal.key_id,
            "keyName": principal.key_name,
            "role": principal.role,
        }
