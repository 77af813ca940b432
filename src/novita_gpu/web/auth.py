"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`, and who each one is (docs/teams.md).

A key is a `Principal`: the team it acts for (the `owner` of the instances, volumes and budgets it sees),
its id and name, and its role: viewer (reads), member (also acts on instances and volumes), admin (also
manages the team's keys, budget and quotas), owner (everything, in every team).

- Keys of API_KEYS each act as today: a team of their own (its id is the key's owner id, `key-...`),
  with role admin of it (as before teams, such a key set its own budget).
- Keys of ADMIN_API_KEYS are owners (a team of their own too).
- Keys kept in the store (teams/keys.py): their team and role.
- With no key anywhere (none in the environment, none ever made in the store), every caller is the
  owner of the one team "default": the server then listens on loopback only (settings).

An owner key acts in another team with `X-Team: <team id or name>`. A viewer's request that would change
anything is refused (403 FORBIDDEN).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import or_, select
from starlette.datastructures import Headers

from novita_gpu.kit.tables import Team
from novita_gpu.teams.keys import OPEN_KEY_ID, KeyStore, Principal, Role, digest, environment_key_id
from novita_gpu.web.errors import ApiError

DEFAULT_OWNER = "default"
_OPEN = Principal(DEFAULT_OWNER, OPEN_KEY_ID, DEFAULT_OWNER, "owner")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def owner_id(key: str) -> str:
    """The owner id of an environment key: its team's id, shown in cost reports, never the key itself."""
    return environment_key_id(key)


class ApiKeys:
    def __init__(self, keys: list[str], admin_keys: list[str] | None = None, store: KeyStore | None = None) -> None:
        admins = admin_keys or []
        self._environment: dict[str, Principal] = {}
        for key in keys:
            self._environment[digest(key)] = Principal(owner_id(key), owner_id(key), owner_id(key), "admin")
        for key in admins:
            self._environment[digest(key)] = Principal(owner_id(key), owner_id(key), owner_id(key), "owner")
        self.store = store  # set once the store is open (build_services)

    def _open(self) -> bool | None:
        """No key anywhere: every caller is the one owner (None: not known without a store read)."""
        if self._environment:
            return False
        if self.store is None:
            return True
        found = self.store.any_cached()
        return None if found is None else not found

    def _environment_key(self, presented: str) -> Principal | None:
        wanted = digest(presented)
        for known, principal in self._environment.items():
            if hmac.compare_digest(known, wanted):
                return principal
        return None

    def cached_principal(self, headers: Headers) -> Principal | None:
        """Who the headers' key is, from memory only (None: unknown, or not known without a store read)."""
        if self._open():
            return _OPEN
        presented = presented_key(headers)
        if presented is None:
            return None
        found = self._environment_key(presented)
        if found is None and self.store is not None:
            found = self.store.cached(digest(presented))[1]
        return found

    async def principal(self, headers: Headers) -> Principal | None:
        """Who the headers' key is; None when the key is missing, unknown, revoked or expired."""
        if not self._environment and (self.store is None or not await self.store.any_keys()):
            return _OPEN
        presented = presented_key(headers)
        if presented is None:
            return None
        found = self._environment_key(presented)
        if found is None and self.store is not None:
            found = await self.store.find(digest(presented))
        return found

    def owner_for(self, headers: Headers) -> str | None:
        """The team a request's headers identify, from memory (the read cache's check)."""
        found = self.cached_principal(headers)
        return None if found is None else found.team


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


_UNAUTHORIZED = (
    "A valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (a revoked or "
    "expired key is refused too)."
)


async def current_principal(request: Request) -> Principal:
    """The request's principal (kept on `request.state.principal` for the audit trail); 401 without one."""
    keys: ApiKeys = request.app.state.api_keys
    principal = await keys.principal(request.headers)
    if principal is None:
        raise ApiError(401, "UNAUTHORIZED", _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    team = request.headers.get("x-team")
    if team and principal.admin and team != principal.team:
        principal = Principal(await _team_id(request, team), principal.key_id, principal.key_name, principal.role)
    request.state.principal = principal
    return principal


async def _team_id(request: Request, ref: str) -> str:
    services = request.app.state.services
    async with services.db.read() as session:
        found: str | None = await session.scalar(select(Team.id).where(or_(Team.id == ref, Team.name == ref)))
    if found is None:
        raise ApiError(404, "TEAM_NOT_FOUND", f"No team {ref!r} (X-Team).")
    return found


def require(principal: Principal, role: Role, doing: str) -> None:
    if not principal.may(role):
        raise ApiError(403, "FORBIDDEN", f"This key's role ({principal.role}) may not {doing}; it takes {role}.")


async def current_owner(request: Request) -> str:
    """The team the request acts for; a viewer may only read."""
    principal = await current_principal(request)
    if request.method not in _READS:
        require(principal, "member", "change anything")
    return principal.team


Owner = Annotated[str, Depends(current_owner)]

# Who is calling, with the role: `caller.owner` is its team, `caller.admin` whether it is an owner key.
Caller = Principal
CallerDep = Annotated[Principal, Depends(current_principal)]
