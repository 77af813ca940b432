"""`novita-gpu keys`: API keys made, listed and revoked right in the store, on the server (docs/teams.md).

For the first key (an HTTP request needs one once any exists) and for an operator locked out: each
command reads DATABASE_URL like `novita-gpu db`, migrates the store first (as `serve` does), and acts on
it directly. A key made here is shown once; a revoke is refused by every replica within seconds.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import typer

from novita_gpu.cli.db import _database_url
from novita_gpu.cli.server import CONFIG_ERROR, fail, store_errors

app = typer.Typer(help="API keys in the store: make the first one, list them, revoke one.", no_args_is_help=True)

_ROLES = ("viewer", "member", "admin", "owner")


async def _create(url: str, team_name: str, role: str, name: str, expires: datetime | None) -> dict[str, Any]:
    from sqlalchemy import or_, select

    from novita_gpu.kit.clock import SystemClock
    from novita_gpu.kit.db import Database
    from novita_gpu.kit.tables import Team
    from novita_gpu.teams.service import key_view, new_key

    clock = SystemClock()
    db = Database(url)
    try:
        await db.migrate()
        async with db.write() as session:
            team = await session.scalar(select(Team).where(or_(Team.id == team_name, Team.name == team_name)))
            if team is None:  # the first key of a team makes it
                now = clock.now()
                team = Team(
                    id=f"team_{uuid.uuid4().hex[:16]}", name=team_name, quotas={}, created_at=now, updated_at=now
                )
                session.add(team)
                await session.flush()
            key, secret = await new_key(
                session, clock, team=team, name=name, role=role, expires_at=expires, created_by="cli"
            )
            view = key_view(key, team.name)
        return {**view, "secret": secret}
    finally:
        await db.dispose()


async def _list(url: str, team: str | None) -> list[dict[str, Any]]:
    from sqlalchemy import or_

    from novita_gpu.kit.db import Database
    from novita_gpu.kit.tables import ApiKey, Team
    from novita_gpu.teams.service import key_view, keys_query

    db = Database(url)
    try:
        await db.migrate()
        query = keys_query().order_by(ApiKey.created_at)
        if team is not None:
            query = query.where(or_(Team.id == team, Team.name == team))
        async with db.read() as session:
            return [key_view(key, team_name) for key, team_name in (await session.execute(query)).all()]
    finally:
        await db.dispose()


async def _revoke(url: str, key_id: str) -> dict[str, Any] | None:
    from novita_gpu.kit.clock import SystemClock
    from novita_gpu.kit.db import Database
    from novita_gpu.kit.tables import ApiKey
    from novita_gpu.teams.service import key_view, keys_query
    from novita_gpu.teams.service import revoke as revoke_key

    db = Database(url)
    try:
        await db.migrate()
        async with db.write() as session:
            found = (await session.execute(keys_query().where(ApiKey.id == key_id))).first()
            if found is None:
                return None
            key, team_name = found
            revoke_key(key, SystemClock().now())
            return key_view(key, team_name)
    finally:
        await db.dispose()


@app.command()
def create(
    team: Annotated[str, typer.Option(metavar="NAME", help="The key's team (id or name); made if it does not exist.")],
    role: Annotated[str, typer.Option(metavar="ROLE", help="viewer, member, admin or owner.")],
    name: Annotated[str, typer.Option(metavar="NAME", help="Who or what uses it (shown in lists and the audit).")],
    expires: Annotated[
        datetime | None, typer.Option(metavar="ISO", help="When it stops working (UTC if no zone).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The key as JSON, secret included.")] = False,
) -> None:
    """Make a key; its secret is printed this once (the store keeps only its hash)."""
    if role not in _ROLES:
        fail(f"--role must be one of {', '.join(_ROLES)}, not {role!r}", CONFIG_ERROR)
    if not (1 <= len(name) <= 63) or not (1 <= len(team) <= 63):
        fail("--name and --team take 1 to 63 characters", CONFIG_ERROR)
    if expires is not None and expires.tzinfo is None:
        from datetime import UTC

        expires = expires.replace(tzinfo=UTC)
    url = _database_url()
    with store_errors(url):
        made = asyncio.run(_create(url, team, role, name, expires))
    if as_json:
        typer.echo(json.dumps(made))
        return
    typer.echo(f"key {made['id']} ({made['name']}, {made['role']} of team {made['teamName']}) made.")
    typer.echo(f"secret (shown this once; keep it now): {made['secret']}")


@app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option(metavar="NAME", help="Only this team's (id or name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Every key in the store: id, prefix, name, team, role, last use, expiry, revocation. Never a secret."""
    url = _database_url()
    with store_errors(url):
        keys = asyncio.run(_list(url, team))
    if as_json:
        typer.echo(json.dumps(keys))
        return
    if not keys:
        typer.echo("no keys in the store")
        return
    for key in keys:
        state = "revoked" if key["revokedAt"] else ("expires " + key["expiresAt"] if key["expiresAt"] else "active")
        used = key["lastUsedAt"] or "never used"
        typer.echo(
            f"{key['id']}  {key['prefix']}…  {key['name']}  {key['role']}  team {key['teamName']}  {used}  {state}"
        )


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (ak_...).")]) -> None:
    """Revoke a key: every replica refuses it within seconds."""
    url = _database_url()
    with store_errors(url):
        revoked = asyncio.run(_revoke(url, key_id))
    if revoked is None:
        fail(f"no key {key_id!r} in the store", CONFIG_ERROR)
    typer.echo(f"key {revoked['id']} ({revoked['name']}) revoked at {revoked['revokedAt']}")
