"""`novita-gpu audit`: the audit trail, newest first: who did what to what, and how it went (admin keys: their
team; owner keys: every team)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from novita_gpu_client import ApiError, Json
from novita_gpu_client.cli.output import Col, Layout, show, when
from novita_gpu_client.cli.session import ApiKey, AsJson, Url, client_for, fail
from novita_gpu_client.cli.teams import duration

PAGE = 100  # events a request, at most


def since(value: str | None, flag: str) -> str | None:
    """An ISO 8601 time as given, or a duration (`15m`, `12h`, `7d`) as that long before now."""
    if value is None:
        return None
    span = duration(value)
    if span is not None:
        return (datetime.now(UTC) - span).isoformat()
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO 8601 time nor a duration like 12h", param_hint=flag
        ) from None
    return value


def audit_table(events: Sequence[Json], more: bool, limit: int) -> RenderableType:
    if not events:
        return "No audit events."
    table = Layout(
        Col("AT"),
        Col("ACTOR", cut=10),
        Col("ACTION"),
        Col("TARGET", cut=12),
        Col("OUTCOME"),
        Col("TEAM", cut=8, drop=2),
        Col("REQUEST", drop=1),
    )
    for e in events:
        table.add_row(
            when(e.get("at")),
            e.get("actorName") or e.get("actor"),
            e.get("action"),
            e.get("target"),
            e.get("outcome"),
            e.get("team"),
            e.get("requestId"),
        )
    if not more:
        return table
    return Group(table, Text(f"(the newest {limit}: --limit N for more, --from/--to for another period)"))


def audit(
    team: Annotated[
        str | None, typer.Option("--team", metavar="TEAM", help="Owner keys: one team's events (id or name).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", metavar="ID", help="Who: a key id (ak_..., key-...) or system:WORKER.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", metavar="ID", help="What: an instance, volume, key or team id.")
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", metavar="ACTION", help="Only this action (instance.stop...).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", metavar="TIME", help="ISO 8601, or a duration ago: 15m, 12h, 7d.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="TIME", help="ISO 8601, or a duration ago.")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Events shown at most.")] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """The audit trail, newest first: when, who (a key or system:WORKER), what and how it went.

    Admin keys see their team's events, owner keys every team's (--team for one). Pages are read until
    --limit events; --json prints them as one JSON array."""
    filters = {"team": team, "actor": actor, "target": target, "action": action}
    bounds = {"start": since(start, "--from"), "end": since(end, "--to")}
    with client_for(url, api_key) as client:
        found = client.iter_audit(**filters, **bounds, page_size=min(limit + 1, PAGE))
        try:
            events = list(islice(found, limit + 1))  # one more than shown: whether there are more
        except ApiError as exc:
            if exc.code != "NOT_FOUND":  # the route's own 404s (TEAM_NOT_FOUND) say what is wrong
                raise
            raise fail(f"this service has no audit trail (GET /api/audit: {exc.message}); upgrade it", 1) from exc
        finally:
            found.close()  # type: ignore[attr-defined]
    more = len(events) > limit
    events = events[:limit]
    show(events, as_json, lambda shown: audit_table(shown, more, limit))
