"""Who a key is, its team, the team's keys and the audit trail in both clients, written once as volumes are:
every request as a `Call`, and `TeamMethods`, which `Methods` (and so `Client` and `AsyncClient`) takes
these methods from (docs/teams.md).

Roles: a viewer reads; a member also acts on instances and volumes; an admin also manages its team's keys,
budget and quotas and reads its audit trail; an owner does everything in every team. A refusal is
`ApiError` 403 FORBIDDEN; a team or key the caller may not see is 404, as if it did not exist.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import quote

from novita_gpu_client import core
from novita_gpu_client.calls import Call, Json
from novita_gpu_client.config import ClientConfig
from novita_gpu_client.mixins import Answer, CallMethods, Items

Role = Literal["viewer", "member", "admin", "owner"]
ROLES: tuple[Role, ...] = ("viewer", "member", "admin", "owner")
AUDIT_PAGE = 100  # events a page, when reading every page


class Keep(enum.Enum):
    """The type of `KEEP`: a quota left as it is (None removes the limit)."""

    KEEP = "KEEP"

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep.KEEP

# -- the requests ---------------------------------------------------------------------------------------


def _segment(value: str) -> str:
    return quote(value, safe="")


def _time(value: str | datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def me() -> Call:
    return Call("GET", "/api/me", retryable=True)


def list_teams() -> Call:
    return Call("GET", "/api/teams", retryable=True)


def get_team(ref: str) -> Call:
    return Call("GET", f"/api/teams/{_segment(ref)}", retryable=True)


def create_team(name: str) -> Call:
    # Not retried: a second create of the name is 409 (the first may have been made).
    return Call("POST", "/api/teams", body={"name": name})


def update_team(
    ref: str,
    name: str | None = None,
    max_gpus: int | Keep | None = KEEP,
    max_usd_per_hour: float | Keep | None = KEEP,
    monthly_budget_usd: float | Keep | None = KEEP,
) -> Call:
    """PATCH with only what is given: a quota left out keeps its value, None (JSON null) removes it."""
    body: Json = {}
    if name is not None:
        body["name"] = name
    given = {"maxGpus": max_gpus, "maxUsdPerHour": max_usd_per_hour, "monthlyBudgetUsd": monthly_budget_usd}
    quotas = {field: value for field, value in given.items() if value is not KEEP}
    if quotas:
        body["quotas"] = quotas
    # The same PATCH again sets the same values: harmless to repeat.
    return Call("PATCH", f"/api/teams/{_segment(ref)}", body=body, retryable=True)


def list_keys(team: str | None = None) -> Call:
    return Call("GET", "/api/keys", params={"team": team} if team is not None else None, retryable=True)


def create_key(name: str, role: Role, team: str | None = None, expires_at: str | datetime | None = None) -> Call:
    body: Json = {"name": name, "role": role}
    if team is not None:
        body["team"] = team
    if expires_at is not None:
        body["expiresAt"] = _time(expires_at)
    # Not retried: a repeat would make a second key (and the first one's secret would be lost).
    return Call("POST", "/api/keys", body=body)


def rotate_key(key_id: str) -> Call:
    # Not retried: a repeat rotates again, and the secret of the first rotation is lost with its answer.
    return Call("POST", f"/api/keys/{_segment(key_id)}/rotate")


def revoke_key(key_id: str) -> Call:
    # A repeat answers the key, revoked.
    return Call("DELETE", f"/api/keys/{_segment(key_id)}", retryable=True)


def audit_page(
    team: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    action: str | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call:
    given = {
        "team": team,
        "actor": actor,
        "target": target,
        "action": action,
        "from": _time(start),
        "to": _time(end),
        "limit": limit,
        "cursor": cursor,
    }
    return Call("GET", "/api/audit", params={k: v for k, v in given.items() if v is not None}, retryable=True)


async def iter_audit(
    transport: core.Transport, config: ClientConfig, filters: dict[str, Any], page_size: int
) -> AsyncGenerator[Json, None]:
    cursor: str | None = None
    while True:
        page = await core.send(transport, config, audit_page(**filters, limit=page_size, cursor=cursor))
        for event in page["events"]:
            yield event
        cursor = page.get("nextCursor")
        if not cursor:
            return


# -- the methods ------------------------------------------------------------------------------------------


class TeamMethods(CallMethods[Answer, Items]):
    """The methods of `Client` and `AsyncClient` (through `Methods`) for who a key is, teams, their keys
    and the audit trail: answers as the client gives them, at once (blocking) or to be awaited."""

    def me(self) -> Answer:
        """Who this key is: `{team, teamName, keyId, keyName, role}` (role viewer, member, admin or owner)."""
        return self._send(me())

    # -- teams -------------------------------------------------------------------------------------

    def list_teams(self) -> Answer:
        """`{teams: [...]}`: this key's team, or every team for an owner key; each as `get_team` gives it."""
        return self._send(list_teams())

    def get_team(self, ref: str) -> Answer:
        """A team by id (team_...) or name: `{id, name, quotas: {maxGpus, maxUsdPerHour, monthlyBudgetUsd},
        use: {gpus, usdPerHour, monthUsd: {limit, used}}, keys, createdAt, updatedAt}` (null: no limit).
        Another team is 404 TEAM_NOT_FOUND unless this is an owner key."""
        return self._send(get_team(ref))

    def create_team(self, name: str) -> Answer:
        """Owner keys: make a team (201); a name taken is 409."""
        return self._send(create_team(name))

    def update_team(
        self,
        ref: str,
        *,
        name: str | None = None,
        max_gpus: int | Keep | None = KEEP,
        max_usd_per_hour: float | Keep | None = KEEP,
        monthly_budget_usd: float | Keep | None = KEEP,
    ) -> Answer:
        """Admin keys (of the team) and owner keys: rename a team or change its quotas. A quota left out
        (`KEEP`) keeps its value; None removes the limit. `monthly_budget_usd` is the team's budget
        (`budget()`), kept with its current onExceeded and webhook. Answers the team as `get_team`."""
        return self._send(update_team(ref, name, max_gpus, max_usd_per_hour, monthly_budget_usd))

    # -- keys ----------------------------------------------------------------------------------------

    def list_keys(self, *, team: str | None = None) -> Answer:
        """Admin keys: `{keys: [{id, name, prefix, team, teamName, role, createdAt, createdBy, rotatedAt,
        lastUsedAt, expiresAt, revokedAt, previousValidUntil}]}`, newest first, revoked ones too, never a
        secret. The key's team by default (every team's for an owner key); `team` (id or name) names one."""
        return self._send(list_keys(team))

    def create_key(
        self, name: str, role: Role, *, team: str | None = None, expires_at: str | datetime | None = None
    ) -> Answer:
        """Admin keys: make a key of `role` (up to this key's own) in `team` (this key's by default), valid
        until `expires_at` (ISO 8601 or a datetime with its time zone; never by default). The answer is the
        key's view and its `secret`, shown this once: the service keeps only a hash."""
        return self._send(create_key(name, role, team, expires_at))

    def rotate_key(self, key_id: str) -> Answer:
        """Admin keys: a new `secret` for the key (shown this once); the old one keeps working until the
        answer's `previousValidUntil` (the server's KEY_ROTATION_GRACE_SECONDS, a day by default)."""
        return self._send(rotate_key(key_id))

    def revoke_key(self, key_id: str) -> Answer:
        """Admin keys: revoke a key; every replica refuses it within a second or two. Answers its view."""
        return self._send(revoke_key(key_id))

    # -- the audit trail -------------------------------------------------------------------------------

    def audit(
        self,
        *,
        team: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Answer:
        """Admin keys (their team) and owner keys (every team, or `team`): one page of the audit trail,
        newest first: `{events: [{id, at, team, actor, actorName, action, target, outcome, requestId,
        details}], nextCursor}`. `actor` is a key id (or `system:<worker>`), `target` an instance, volume,
        key or team id; `start`/`end` bound `at` (ISO 8601 or datetimes). Pass `nextCursor` as `cursor`
        for the next page; `iter_audit` does that for you."""
        return self._send(audit_page(team, actor, target, action, start, end, limit, cursor))

    def iter_audit(
        self,
        *,
        team: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
        page_size: int = AUDIT_PAGE,
    ) -> Items:
        """The same events one by one, newest first, a page read when it is needed (stop whenever you like)."""
        filters = {"team": team, "actor": actor, "target": target, "action": action, "start": start, "end": end}
        return self._instances(iter_audit(self._transport, self._config, filters, page_size))
