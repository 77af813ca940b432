"""`novita-gpu me`: who this key is; `novita-gpu teams ...`: teams, their quotas and use; `novita-gpu teams
keys ...`: the team's keys, made, rotated and revoked through the API (docs/teams.md).

Not `novita-gpu keys`: that is the server's command (its distribution), which makes the first key in the
store itself, before there is any key to call the API with.

A key's secret is in the answer of `teams keys create` and `teams keys rotate` only, once: the command
prints it in a block of its own (or in `--json`'s `secret`), and the service keeps nothing but its hash.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from novita_gpu_client import KEEP, Client, Json
from novita_gpu_client.cli.output import Col, Layout, age, price, show, text, when, width
from novita_gpu_client.cli.session import ApiKey, AsJson, Url, client_for, fail
from novita_gpu_client.teams import Keep

app = typer.Typer(help="Teams: their quotas and use, and their keys (admin keys).", no_args_is_help=True)
keys_app = typer.Typer(help="The team's keys: list, make, rotate and revoke them (admin keys).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

KEY_PREFIX = "ak_"
N = TypeVar("N", int, float)
WHAT_ROLES_DO = {
    "viewer": "reads the team's instances, volumes, events and costs",
    "member": "reads, creates and acts on the team's instances and volumes",
    "admin": "a member who also manages the team's keys, budget and quotas, and reads its audit trail",
    "owner": "everything, in every team (X-Team: TEAM to act in another)",
}


class Role(StrEnum):
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"


TeamRef = Annotated[
    str | None,
    typer.Argument(metavar="TEAM", help="A team's id (team_...) or name (default: this key's).", show_default=False),
]
KeyRef = Annotated[str, typer.Argument(metavar="KEY", help="A key's id (ak_...) or name (a key not revoked).")]
InTeam = Annotated[
    str | None,
    typer.Option("--team", metavar="TEAM", help="A team's id or name (default: this key's).", show_default=False),
]

# -- what the commands print ----------------------------------------------------------------------------


def _usd(value: Any) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def _use_line(use: Json, shown: Callable[[Any], str]) -> str:
    """`3 of 4 (1 left)`, `$2.10 of $5.00 (58% left)`, `3 (no limit)`."""
    used, limit = use.get("used"), use.get("limit")
    if limit is None:
        return f"{shown(used)} (no limit)"
    if used is not None and used >= limit:
        return f"{shown(used)} of {shown(limit)} (none left)"
    left = f"{shown(limit - used)} left" if used is not None else "?"
    return f"{shown(used)} of {shown(limit)} ({left})"


def _use_cell(use: Json, shown: Callable[[Any], str]) -> str:
    """`3/4`, `3/-` (no limit)."""
    limit = use.get("limit")
    return f"{shown(use.get('used'))}/{'-' if limit is None else shown(limit)}"


def team_table(team: Json) -> Layout:
    use = team.get("use") or {}
    table = Layout(Col("FIELD"), Col("VALUE", wrap=True))
    rows: dict[str, Any] = {
        "id": team["id"],
        "name": team["name"],
        "gpus": _use_line(use.get("gpus") or {}, _number),
        "usd/hour": _use_line(use.get("usdPerHour") or {}, price),
        "this month": _use_line(use.get("monthUsd") or {}, _usd),
        "keys": team.get("keys"),
        "created": when(team.get("createdAt")),
        "updated": when(team.get("updatedAt")),
    }
    for field, value in rows.items():
        table.add_row(field, value)
    return table


def teams_table(teams: Sequence[Json]) -> Layout | str:
    """One line per team: each quota as used/limit (`-`: no limit)."""
    if not teams:
        return "No teams."
    table = Layout(
        Col("NAME", cut=12),
        Col("ID", drop=1),
        Col("GPUS", right=True),
        Col("$/H", right=True),
        Col("MONTH $", right=True),
        Col("KEYS", right=True),
    )
    for team in teams:
        use = team.get("use") or {}
        table.add_row(
            team["name"],
            team["id"],
            _use_cell(use.get("gpus") or {}, _number),
            _use_cell(use.get("usdPerHour") or {}, lambda v: "-" if v is None else f"{v:.2f}"),
            _use_cell(use.get("monthUsd") or {}, lambda v: "-" if v is None else f"{v:.2f}"),
            team.get("keys"),
        )
    return table


def me_table(me: Json) -> Layout:
    table = Layout(Col("FIELD"), Col("VALUE", wrap=True))
    team = f"{me['teamName']} ({me['team']})" if me.get("teamName") and me["teamName"] != me["team"] else me["team"]
    key = f"{me['keyName']} ({me['keyId']})" if me.get("keyName") and me["keyName"] != me["keyId"] else me["keyId"]
    table.add_row("team", team)
    table.add_row("key", key)
    table.add_row("role", f"{me['role']}: {WHAT_ROLES_DO.get(me['role'], '?')}")
    return table


def _past(value: str | None) -> bool:
    if not value:
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) <= datetime.now(UTC)
    except ValueError:
        return False


def key_status(key: Json) -> str:
    """revoked, expired, rotating (the old secret still works), or active."""
    if key.get("revokedAt"):
        return "revoked"
    if _past(key.get("expiresAt")):
        return "expired"
    if key.get("previousValidUntil") and not _past(key["previousValidUntil"]):
        return "rotating"
    return "active"


def keys_table(keys: Sequence[Json]) -> Layout | str:
    if not keys:
        return "No keys."
    table = Layout(
        Col("ID"),
        Col("NAME", cut=10),
        Col("TEAM", cut=8, drop=2),
        Col("ROLE"),
        Col("PREFIX", drop=3),
        Col("USED"),
        Col("STATUS"),
    )
    for key in keys:
        used = key.get("lastUsedAt")
        table.add_row(
            key["id"],
            key["name"],
            key.get("teamName") or key.get("team"),
            key["role"],
            key.get("prefix"),
            f"{age(used)} ago" if used else "never",
            key_status(key),
        )
    return table


def key_table(key: Json) -> Layout:
    table = Layout(Col("FIELD"), Col("VALUE", wrap=True))
    rows: dict[str, Any] = {
        "id": key["id"],
        "name": key["name"],
        "team": f"{text(key.get('teamName'))} ({text(key.get('team'))})",
        "role": key["role"],
        "prefix": key.get("prefix"),
        "status": key_status(key),
        "created": f"{when(key.get('createdAt'))}" + (f" by {key['createdBy']}" if key.get("createdBy") else ""),
        "last used": when(key.get("lastUsedAt")) if key.get("lastUsedAt") else "never",
        "expires": when(key.get("expiresAt")) if key.get("expiresAt") else "never",
    }
    if key.get("rotatedAt"):
        rows["rotated"] = when(key["rotatedAt"])
    if key.get("previousValidUntil"):
        rows["old secret until"] = when(key["previousValidUntil"])
    if key.get("revokedAt"):
        rows["revoked"] = when(key["revokedAt"])
    for field, value in rows.items():
        table.add_row(field, value)
    return table


def secret_text(key: Json, made: bool, room: int | None = None) -> str:
    """The key in a sentence, then its secret alone on a line of its own (never wrapped, easy to select),
    then what to do with it; the sentences wrapped to the terminal (`room` columns)."""
    room = room or width()
    who = f"{key['name']} ({key['id']}), {key['role']} of team {key.get('teamName') or key.get('team')}"
    head = f"Created key {who}." if made else f"Rotated key {who}."
    if made and key.get("expiresAt"):
        head += f" It expires at {when(key['expiresAt'])}."
    said = "Its secret, shown this once (the service keeps only its hash):" if made else "Its new secret, shown once:"
    after = []
    if not made and key.get("previousValidUntil"):
        after.append(f"The old secret keeps working until {when(key['previousValidUntil'])}.")
    after.append(f"Store it now: it cannot be shown again (novita-gpu teams keys rotate {key['id']} makes a new one).")
    head, said, then = (textwrap.fill(paragraph, room) for paragraph in (head, said, " ".join(after)))
    return "\n".join([head, "", said, "", f"    {key['secret']}", "", then])


# -- values the options take ---------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> timedelta | None:
    """`90s`, `15m`, `12h`, `30d` as a timedelta; None when `value` is not one."""
    found = _DURATION.match(value.strip())
    return None if found is None else timedelta(seconds=float(found[1]) * _UNITS[found[2]])


def _limit(value: str | None, flag: str, kind: Callable[[str], N]) -> N | Keep | None:
    """A quota's flag: left out keeps it, `none` removes the limit, else a number (`kind`: int or float)."""
    if value is None:
        return KEEP
    if value.strip().lower() in ("none", "null", "-"):
        return None
    try:
        number = kind(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither {'a whole number' if kind is int else 'a number'} nor none", param_hint=flag
        ) from None
    if number < 0:
        raise typer.BadParameter(f"{value!r} is negative", param_hint=flag)
    return number


# -- the commands -----------------------------------------------------------------------------------------


def me(url: Url = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Who this key is: its team, its name and id, and its role (and what the role may do)."""
    with client_for(url, api_key) as client:
        answer = client.me()
    show(answer, as_json, me_table)


def _team_ref(client: Client, ref: str | None) -> str:
    return ref if ref is not None else str(client.me()["team"])


@app.command("list")
def list_teams(url: Url = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """List teams with each quota as used/limit: this key's team, or every team for an owner key.

    GPUS are the GPUs held by instances not stopped, terminated or failed; $/H their hourly prices summed;
    MONTH $ what this month cost so far. A `-` limit is no limit. --json prints one JSON array."""
    with client_for(url, api_key) as client:
        teams = client.list_teams()["teams"]
    show(teams, as_json, teams_table)


@app.command("get")
def get_team(ref: TeamRef = None, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show a team (this key's by default): its quotas and what is used of each, and its keys."""
    with client_for(url, api_key) as client:
        team = client.get_team(_team_ref(client, ref))
    show(team, as_json, team_table)


@app.command("create")
def create_team(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique: letters, digits, - _ and . (up to 63).")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Owner keys: make a team (then `teams keys create NAME --team TEAM --role admin` for its first key)."""
    with client_for(url, api_key) as client:
        team = client.create_team(name)
    show(team, as_json, team_table)


@app.command("update")
def update_team(
    ref: TeamRef = None,
    name: Annotated[str | None, typer.Option("--name", metavar="NAME", help="A new name.")] = None,
    max_gpus: Annotated[
        str | None, typer.Option("--max-gpus", metavar="N|none", help="GPUs held at once; none: no limit.")
    ] = None,
    max_usd_per_hour: Annotated[
        str | None,
        typer.Option("--max-usd-per-hour", metavar="USD|none", help="Hourly prices of held instances, summed."),
    ] = None,
    monthly_budget: Annotated[
        str | None,
        typer.Option("--monthly-budget", metavar="USD|none", help="The team's monthly budget (as `budget set`)."),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Admin keys: rename a team (this key's by default) or change its quotas.

    Only what is given changes; `none` removes a limit (--max-gpus none). A create or start that would go
    past a quota is refused (QUOTA_EXCEEDED); what already runs is left alone."""
    gpus = _limit(max_gpus, "--max-gpus", int)
    usd_per_hour = _limit(max_usd_per_hour, "--max-usd-per-hour", float)
    budget = _limit(monthly_budget, "--monthly-budget", float)
    if name is None and gpus is KEEP and usd_per_hour is KEEP and budget is KEEP:
        raise fail("nothing to change: give --name, --max-gpus, --max-usd-per-hour or --monthly-budget", 2)
    with client_for(url, api_key) as client:
        team = client.update_team(
            _team_ref(client, ref),
            name=name,
            max_gpus=gpus,
            max_usd_per_hour=usd_per_hour,
            monthly_budget_usd=budget,
        )
    show(team, as_json, team_table)


# -- keys -----------------------------------------------------------------------------------------------


def key_id(client: Client, ref: str, team: str | None) -> str:
    """The id of the key `ref` names: an id as is, else the one key not revoked with that name."""
    if ref.startswith(KEY_PREFIX):
        return ref
    named = [k for k in client.list_keys(team=team)["keys"] if k["name"] == ref and not k.get("revokedAt")]
    if not named:
        where = f" in team {team}" if team else ""
        raise fail(f"no key named {ref!r}{where} (novita-gpu teams keys list shows them)", 1)
    if len(named) > 1:
        found = ", ".join(f"{k['id']} in {k.get('teamName') or k.get('team')}" for k in named)
        raise fail(f"{len(named)} keys are named {ref!r} ({found}): name one by its id", 1)
    return str(named[0]["id"])


@keys_app.command("list")
def list_keys(
    team: InTeam = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Revoked keys too.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List the team's keys, newest first, never their secrets; revoked ones only with --all.

    An owner key lists every team's keys unless --team. STATUS is active, rotating (the old secret still
    works), expired or revoked. --json prints one JSON array."""
    with client_for(url, api_key) as client:
        keys = client.list_keys(team=team)["keys"]
    if not show_all:
        keys = [k for k in keys if not k.get("revokedAt")]
    show(keys, as_json, keys_table)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What the key is for: a person, a service.")],
    role: Annotated[Role, typer.Option("--role", help="What it may do (up to this key's own role).")],
    team: InTeam = None,
    expires_at: Annotated[
        str | None,
        typer.Option("--expires-at", metavar="TIME", help="ISO 8601 (with its zone) when it stops working."),
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", metavar="DURATION", help="Or how long it works: 12h, 30d.")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Admin keys: make a key and print its secret, this once.

    The service keeps only the secret's hash: store it now (--json has it as `secret`). Without --expires-at
    or --expires-in it works until revoked."""
    if expires_at is not None and expires_in is not None:
        raise fail("give --expires-at or --expires-in, not both", 2)
    if expires_in is not None:
        span = duration(expires_in)
        if span is None:
            raise typer.BadParameter(f"{expires_in!r} is not a duration like 12h or 30d", param_hint="--expires-in")
        expires_at = (datetime.now(UTC) + span).isoformat()
    with client_for(url, api_key) as client:
        key = client.create_key(name, role.value, team=team, expires_at=expires_at)
    show(key, as_json, lambda k: secret_text(k, made=True))


@keys_app.command("rotate")
def rotate_key(
    key: KeyRef, team: InTeam = None, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Admin keys: give a key a new secret and print it, this once.

    The old secret keeps working for a grace period (a day by default), so what uses it can move over."""
    with client_for(url, api_key) as client:
        rotated = client.rotate_key(key_id(client, key, team))
    show(rotated, as_json, lambda k: secret_text(k, made=False))


@keys_app.command("revoke")
def revoke_key(
    key: KeyRef,
    team: InTeam = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Admin keys: revoke a key; every replica refuses it within seconds. Asks first unless --yes.

    Without a terminal to ask on, it refuses unless --yes."""
    if not yes and not sys.stdin.isatty():
        raise fail("refusing to revoke without confirmation: stdin is not a terminal; pass --yes", 2)
    with client_for(url, api_key) as client:
        found = key_id(client, key, team)
        if not yes:
            question = f"Revoke key {key if key == found else f'{key} ({found})'}? What uses it is refused from now on"
            if not typer.confirm(question, default=False, err=True):
                raise fail("not revoked", 1)
        revoked = client.revoke_key(found)
    show(revoked, as_json, lambda k: f"{k['id']} ({k['name']}): revoked at {when(k.get('revokedAt'))}")
