"""`novita-gpu events [--follow] [ID|NAME]`: status changes, stored and live, one line each.

Reads the event stream (docs/events.md) through the SDK, which reconnects by itself with the last event
id (before the first event: the stream's position when it started): a restart of the service or a
dropped connection while following loses and repeats nothing.

One rule, with or without an instance: without --follow the stored changes are printed (those after
--after, else all of them); with --follow only the changes from now on, unless --after asks for the
stored ones after an id first (--after 0: all of them).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from novita_gpu_client import DEFAULT_URL, ApiError, Client
from novita_gpu_client.cli.output import when
from novita_gpu_client.cli.session import ApiKey, Url, client_for
from novita_gpu_client.events import Event


def _instance_id(client: Client, ref: str) -> str:
    """The id of `ref`, an instance id or the name of a live instance."""
    try:
        return str(client.get(ref)["instanceId"])
    except ApiError as exc:
        if exc.status != 404:
            raise
        try:
            return str(client.get_by_name(ref)["instanceId"])
        except ApiError:
            raise exc from None


# Events that are not (only) a change of status, by their name: what the line says of them.
NAMED = {"instance.reclaim_notice": "reclaim notice", "instance.reclaimed": "reclaimed"}


def line(event: Event) -> str:
    """`2026-01-01T00:02:10Z  my-instance  health_checking -> ready  Every http port answered.` An event
    named otherwise than its status says so (`ready  reclaim notice  [SPOT_RECLAIMED]  ...`), and one during
    a spot recovery names its attempt and path (`recovering -> running  recovery 1 (migrate)  ...`)."""
    data = event.data
    inner = data.get("data") or {}
    status, previous = data.get("status"), data.get("previousStatus")
    move = str(status) if previous == status else f"{previous or '-'} -> {status}"
    parts = [when(data.get("timestamp")), str(data.get("name")), move]
    if (named := NAMED.get(event.type)) is not None:
        parts.append(named)
    if data.get("recovered"):
        parts.append(f"recovery {data.get('attempt')} ({data.get('recoveryPath')})")
    if reason := inner.get("statusReason"):
        parts.append(f"[{reason}]")
    if inner.get("statusMessage"):
        parts.append(str(inner["statusMessage"]))
    return "  ".join(parts)


def events(
    ref: Annotated[
        str | None,
        typer.Argument(metavar="[ID|NAME]", help="One instance, by id or name; every instance when left out."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Print each change from now on as it happens (Ctrl-C ends); the stored ones only with --after.",
        ),
    ] = False,
    after: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Print the stored changes after this event id first (0: all). Default: all without --follow, "
            "none with it.",
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line: {id, ...webhook body}.")] = False,
) -> None:
    """Status changes of every instance, or of one: the stored ones, or with --follow each new one as it
    happens (and the stored ones after --after first). The same with or without an instance."""
    if after is None and not follow:
        after = 0
    with client_for(url, api_key) as client:
        instance_id = _instance_id(client, ref) if ref is not None else None
        try:
            for event in client.iter_events(instance_id, after, follow=follow):
                shown = json.dumps({"id": event.id, **event.data}) if as_json else line(event)
                typer.echo(shown)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
