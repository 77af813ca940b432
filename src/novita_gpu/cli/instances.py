"""`novita-gpu instances ...`: create, list, inspect, start, stop, delete, wait for and touch instances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table

from novita_gpu.cli.output import answer_line, grid, instance_table, instances_table, show, text, when
from novita_gpu.cli.session import ApiKey, AsJson, ByName, InstanceId, OptionalId, Url, client_for
from novita_gpu.sdk import DEFAULT_URL, ApiError, Client, Json
from novita_gpu.sdk.calls import Action

app = typer.Typer(help="Create, inspect, start, stop and delete instances.", no_args_is_help=True)


@app.command("list")
def list_instances(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    status: Annotated[str | None, typer.Option(help="Only these statuses (comma-separated).")] = None,
    name: Annotated[str | None, typer.Option(help="Only instances with this name.")] = None,
) -> None:
    """List instances, newest first (every page; --json prints one JSON array)."""
    with client_for(url, api_key) as client:
        items = list(client.iter_instances(status=status, name=name))
    show(items, as_json, instances_table)


@app.command("get")
def get_instance(
    ref: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="Instance id or name.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show one instance, by id or else by name."""
    with client_for(url, api_key) as client:
        try:
            view = client.get(ref)
        except ApiError as exc:
            if exc.status != 404:
                raise
            try:
                view = client.get_by_name(ref)
            except ApiError:
                raise exc from None
    show(view, as_json, instance_table)


@app.command("create")
def create_instance(
    name: Annotated[str, typer.Option(help="A unique name: letters, digits, - and _.")],
    product: Annotated[str, typer.Option(help='GPU product name, e.g. "RTX 4090 24GB".')],
    template: Annotated[str, typer.Option(help='Template id or name, e.g. "pytorch-jupyter".')],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    gpus: Annotated[int | None, typer.Option(help="GPUs (1-8; default 1).")] = None,
    region: Annotated[str | None, typer.Option(help="Preferred region (others are fallbacks).")] = None,
    auto_stop_minutes: Annotated[int | None, typer.Option(help="Idle minutes before auto-stop; 0 = never.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="POSTed on every status change.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the instance is ready.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: seconds to wait at most.")] = 900,
) -> None:
    """Create an instance; with --wait, return once it is ready."""
    with client_for(url, api_key) as client:
        view = client.create(
            name,
            product,
            template,
            gpu_num=gpus,
            region=region,
            auto_stop_minutes=auto_stop_minutes,
            webhook_url=webhook_url,
        )
        if wait:
            view = client.wait_for(view["instanceId"], "ready", timeout=timeout)
    show(view, as_json, instance_table)


_BY_ID: dict[Action, Callable[[Client, str], Json]] = {
    "start": Client.start,
    "stop": Client.stop,
    "delete": Client.delete,
}
_BY_NAME: dict[Action, Callable[[Client, str], Json]] = {
    "start": Client.start_by_name,
    "stop": Client.stop_by_name,
    "delete": Client.delete_by_name,
}


def _act(action: Action, instance_id: str | None, name: str | None, url: str, api_key: str | None) -> Json:
    """One action by id (POST /api/instances/{id}/...) or by name (POST /api/instances/... {instanceName})."""
    if (instance_id is None) == (name is None):
        raise typer.BadParameter("give an instance id or --name (one of them).")
    with client_for(url, api_key) as client:
        if instance_id is not None:
            return _BY_ID[action](client, instance_id)
        assert name is not None
        return _BY_NAME[action](client, name)


def _action_command(action: Action, summary: str) -> Callable[..., None]:
    """The command for one action: by id (an argument) or by name (--name)."""

    def command(
        instance_id: OptionalId = None,
        name: ByName = None,
        url: Url = DEFAULT_URL,
        api_key: ApiKey = None,
        as_json: AsJson = False,
    ) -> None:
        show(_act(action, instance_id, name, url, api_key), as_json, answer_line)

    command.__doc__ = summary
    return command


_ACTIONS: tuple[tuple[Action, str], ...] = (
    ("start", "Start a stopped instance."),
    ("stop", "Stop an instance (its record and disk are kept)."),
    ("delete", "Delete an instance at Novita (the record is kept as terminated)."),
)
for _action, _summary in _ACTIONS:
    app.command(_action)(_action_command(_action, _summary))


@app.command("wait")
def wait_instance(
    instance_id: InstanceId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    status: Annotated[str, typer.Option("--for", help="Status(es) to wait for, comma-separated.")] = "ready",
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 900,
) -> None:
    """Wait until an instance has a status; exits 1 if it fails or is terminated instead, or on timeout."""
    wanted = [s.strip() for s in status.split(",") if s.strip()]
    with client_for(url, api_key) as client:
        view = client.wait_for(instance_id, wanted, timeout=timeout)
    show(view, as_json, instance_table)


@app.command("touch")
def touch_instance(
    instance_id: InstanceId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Mark an instance used now, deferring its auto-stop."""
    with client_for(url, api_key) as client:
        answer = client.touch(instance_id)
    show(
        answer,
        as_json,
        lambda a: f"{a['instanceId']}: used at {when(a['lastUsedAt'])}; auto-stop at {when(a['autoStop']['stopsAt'])}",
    )


@app.command("events")
def instance_events(
    instance_id: InstanceId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """An instance's status history and its webhook deliveries."""
    with client_for(url, api_key) as client:
        answer = client.events(instance_id)

    def render(answer: Json) -> Table:
        table = grid("AT", "STATUS", "REASON", "MESSAGE", "WEBHOOKS", keep=2)
        for e in answer["events"]:
            hooks = ", ".join(
                f"{w['status']} x{w['attempts']}" if w["attempts"] else w["status"] for w in e["webhooks"]
            )
            table.add_row(when(e["at"]), e["to"], text(e["reason"]), text(e["message"]), text(hooks))
        return table

    show(answer, as_json, render)


@app.command("sync")
def sync_instances(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Reconcile with Novita now."""
    with client_for(url, api_key) as client:
        answer = client.sync()
    show(answer, as_json, lambda a: ", ".join(f"{k}: {v}" for k, v in a.items()))
