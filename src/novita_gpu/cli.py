"""The `novita-gpu` command: run the service or the emulator, and drive instances through the service's API.

Client commands use the sync SDK. They print rich tables, or the server's JSON with `--json`. An API
error prints `error: CODE: message (request id)` on stderr and exits 1 (as does a wait that fails or
times out); a service that cannot be reached exits 2.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from novita_gpu.sdk import (
    DEFAULT_URL,
    ApiError,
    Client,
    InstanceFailed,
    Json,
    ServiceConnectionError,
    WaitTimeout,
)
from novita_gpu.sdk.calls import Action

app = typer.Typer(
    help="A self-hosted control plane for Novita.ai GPU instances.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would include the API key
)
instances_app = typer.Typer(help="Create, inspect, start, stop and delete instances.", no_args_is_help=True)
autostop_app = typer.Typer(help="Auto-stop figures and on-demand sweeps.", no_args_is_help=True)
app.add_typer(instances_app, name="instances")
app.add_typer(autostop_app, name="autostop")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default: HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default: PORT or 3000)."),
) -> None:
    """Run the service (against the built-in emulator unless NOVITA_API_KEY is set)."""
    from novita_gpu.app import create_app
    from novita_gpu.serving import serve_forever
    from novita_gpu.settings import InsecureConfiguration, Settings

    settings = Settings()
    host = host or settings.host
    port = settings.port if port is None else port
    try:
        settings.check_exposure(host)
    except InsecureConfiguration as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    serve_forever(create_app(settings), host, port)


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(4000, help="Port to listen on."),
    speed: float = typer.Option(1.0, help="Timing multiplier: 10 makes instances boot ten times faster."),
    seed: int = typer.Option(42, help="Seed for the emulator's randomness."),
    api_key: list[str] = typer.Option(None, help="Accept only these API keys (default: any non-empty key)."),
) -> None:
    """Run the Novita API emulator alone (for offline development and tests)."""
    from novita_gpu.emulator.app import create_emulator_app
    from novita_gpu.emulator.config import EmulatorConfig
    from novita_gpu.observability.logging import configure_logging
    from novita_gpu.serving import serve_forever

    config = EmulatorConfig(speed=speed, seed=seed, api_keys=list(api_key or []))
    typer.echo(f"Novita emulator on http://{host}:{port}/gpu-instance/openapi/v1 (speed x{speed})", err=True)
    configure_logging("INFO", "console")
    serve_forever(create_emulator_app(config), host, port)


# -- client commands: options, session, output ---------------------------------------------------

Url = Annotated[str, typer.Option("--url", envvar="NOVITA_GPU_URL", help="The service's base URL.")]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="NOVITA_GPU_API_KEY", help="API key, sent as a Bearer token.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]
InstanceId = Annotated[str, typer.Argument(help="Instance id (inst_...).")]
OptionalId = Annotated[str | None, typer.Argument(help="Instance id (inst_...); or use --name.", show_default=False)]
ByName = Annotated[str | None, typer.Option("--name", help="Act on the live instance with this name instead.")]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


@contextlib.contextmanager
def _client(url: str, api_key: str | None) -> Iterator[Client]:
    """A client for one command; SDK errors become a line on stderr and the exit code."""
    try:
        with Client(url, api_key=api_key) as client:
            yield client
    except ApiError as exc:
        raise _fail(f"{exc.code}: {exc.message} (request {exc.request_id or 'unknown'})", 1) from exc
    except (InstanceFailed, WaitTimeout) as exc:
        raise _fail(str(exc), 1) from exc
    except ServiceConnectionError as exc:
        raise _fail(f"{exc}. Is `novita-gpu serve` running there? (--url / NOVITA_GPU_URL)", 2) from exc


def _show(data: Any, as_json: bool, render: Callable[[Any], RenderableType]) -> None:
    """The JSON as the server sent it, or `render(data)`: a line as is, anything else through rich."""
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    shown = render(data)
    if isinstance(shown, str):
        typer.echo(shown)
    else:
        Console(markup=False, highlight=False).print(shown)


def _table(*columns: str, keep: int = 1) -> Table:
    """A borderless table whose first `keep` columns are never wrapped (ids stay copyable)."""
    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for column in table.columns[:keep]:
        column.no_wrap = True
    return table


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _when(value: str | None) -> str:
    """An ISO timestamp to the second (the API's timestamps carry microseconds)."""
    return "-" if value is None else value.split(".")[0].removesuffix("Z") + "Z"


def _price(value: Any) -> str:
    return "-" if value is None else f"${value:.4f}"


def _status(view: Json) -> str:
    reason = view.get("statusReason")
    return f"{view['status']} ({reason})" if reason else str(view["status"])


def _instances_table(items: Sequence[Json]) -> Table | str:
    if not items:
        return "No instances."
    table = _table("ID", "NAME", "STATUS", "PRODUCT", "REGION", "$/H", keep=3)
    for i in items:
        table.add_row(
            i["instanceId"],
            i["name"],
            _status(i),
            _text(i.get("productName")),
            _text(i.get("region")),
            _price(i.get("pricePerHour")),
        )
    return table


def _instance_table(view: Json) -> Table:
    table = _table("FIELD", "VALUE")
    auto_stop = view.get("autoStop") or {}
    rows = {
        "id": view["instanceId"],
        "name": view["name"],
        "status": _status(view),
        "message": view.get("statusMessage"),
        "upstream": view.get("upstreamStatus"),
        "product": f"{_text(view.get('productName'))} x{view.get('gpuNum', 1)}",
        "region": view.get("region"),
        "price": _price(view.get("pricePerHour")) + "/h",
        "template": view.get("templateId"),
        "auto-stop": f"after {auto_stop.get('idleMinutes')} idle min, at {_when(auto_stop.get('stopsAt'))}",
        "created": _when(view.get("createdAt")),
        "ready": _when(view.get("readyAt")),
    }
    for port in (view.get("connectionDetails") or {}).get("ports") or []:
        rows[f"port {port.get('port')}"] = f"{port.get('endpoint')} ({port.get('type')})"
    for field, value in rows.items():
        table.add_row(field, _text(value))
    return table


def _answer_line(answer: Json) -> str:
    line = f"{answer['instanceId']} ({answer.get('name')}): {answer['status']}"
    return f"{line}: {answer['message']}" if answer.get("message") else line


# -- instances -----------------------------------------------------------------------------------


@instances_app.command("list")
def list_instances(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    status: Annotated[str | None, typer.Option(help="Only these statuses (comma-separated).")] = None,
    name: Annotated[str | None, typer.Option(help="Only instances with this name.")] = None,
) -> None:
    """List instances, newest first (every page; --json prints one JSON array)."""
    with _client(url, api_key) as client:
        items = list(client.iter_instances(status=status, name=name))
    _show(items, as_json, _instances_table)


@instances_app.command("get")
def get_instance(
    ref: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="Instance id or name.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show one instance, by id or else by name."""
    with _client(url, api_key) as client:
        try:
            view = client.get(ref)
        except ApiError as exc:
            if exc.status != 404:
                raise
            try:
                view = client.get_by_name(ref)
            except ApiError:
                raise exc from None
    _show(view, as_json, _instance_table)


@instances_app.command("create")
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
    with _client(url, api_key) as client:
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
    _show(view, as_json, _instance_table)


def _act(action: Action, instance_id: str | None, name: str | None, url: str, api_key: str | None) -> Json:
    """One action by id (POST /api/instances/{id}/...) or by name (POST /api/instances/... {instanceName})."""
    if instance_id is not None and name is not None:
        raise typer.BadParameter("give an instance id or --name, not both.")
    with _client(url, api_key) as client:
        if instance_id is not None:
            by_id: dict[str, Callable[[str], Json]] = {
                "start": client.start,
                "stop": client.stop,
                "delete": client.delete,
            }
            return by_id[action](instance_id)
        if name is not None:
            by_name: dict[str, Callable[[str], Json]] = {
                "start": client.start_by_name,
                "stop": client.stop_by_name,
                "delete": client.delete_by_name,
            }
            return by_name[action](name)
    raise typer.BadParameter("give an instance id or --name.")


def _action_command(action: Action, summary: str) -> Callable[..., None]:
    """The command for one action: by id (an argument) or by name (--name)."""

    def command(
        instance_id: OptionalId = None,
        name: ByName = None,
        url: Url = DEFAULT_URL,
        api_key: ApiKey = None,
        as_json: AsJson = False,
    ) -> None:
        _show(_act(action, instance_id, name, url, api_key), as_json, _answer_line)

    command.__doc__ = summary
    return command


_ACTIONS: tuple[tuple[Action, str], ...] = (
    ("start", "Start a stopped instance."),
    ("stop", "Stop an instance (its record and disk are kept)."),
    ("delete", "Delete an instance at Novita (the record is kept as terminated)."),
)
for _action, _summary in _ACTIONS:
    instances_app.command(_action)(_action_command(_action, _summary))


@instances_app.command("wait")
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
    with _client(url, api_key) as client:
        view = client.wait_for(instance_id, wanted, timeout=timeout)
    _show(view, as_json, _instance_table)


@instances_app.command("touch")
def touch_instance(
    instance_id: InstanceId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Mark an instance used now, deferring its auto-stop."""
    with _client(url, api_key) as client:
        answer = client.touch(instance_id)
    _show(
        answer,
        as_json,
        lambda a: (
            f"{a['instanceId']}: used at {_when(a['lastUsedAt'])}; auto-stop at {_when(a['autoStop']['stopsAt'])}"
        ),
    )


@instances_app.command("events")
def instance_events(
    instance_id: InstanceId, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """An instance's status history and its webhook deliveries."""
    with _client(url, api_key) as client:
        answer = client.events(instance_id)

    def render(answer: Json) -> Table:
        table = _table("AT", "STATUS", "REASON", "MESSAGE", "WEBHOOKS", keep=2)
        for e in answer["events"]:
            hooks = ", ".join(
                f"{w['status']} x{w['attempts']}" if w["attempts"] else w["status"] for w in e["webhooks"]
            )
            table.add_row(_when(e["at"]), e["to"], _text(e["reason"]), _text(e["message"]), _text(hooks))
        return table

    _show(answer, as_json, render)


@instances_app.command("sync")
def sync_instances(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Reconcile with Novita now."""
    with _client(url, api_key) as client:
        answer = client.sync()
    _show(answer, as_json, lambda a: ", ".join(f"{k}: {v}" for k, v in a.items()))


# -- catalog, health, auto-stop ------------------------------------------------------------------


@app.command()
def products(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    name: Annotated[str | None, typer.Option(help="Only products whose name contains this.")] = None,
) -> None:
    """GPU products with their cheapest price and regions."""
    with _client(url, api_key) as client:
        answer = client.products(name)

    def render(answer: Json) -> Table:
        table = _table("PRODUCT", "FROM $/H", "AVAILABLE", "REGIONS")
        for p in answer["products"]:
            regions = ", ".join(o["region"] for o in p["offers"] if o["available"])
            table.add_row(
                p["productName"], _price(p["cheapestPricePerHour"]), "yes" if p["available"] else "no", regions
            )
        return table

    _show(answer, as_json, render)


@app.command()
def templates(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    name: Annotated[str | None, typer.Option(help="Only templates whose name contains this.")] = None,
) -> None:
    """Templates usable as --template (by id or name)."""
    with _client(url, api_key) as client:
        answer = client.templates(name)

    def render(answer: Json) -> Table:
        table = _table("ID", "NAME", "IMAGE", "PORTS")
        for t in answer["templates"]:
            ports = ", ".join(f"{p}/{group['type']}" for group in t["ports"] for p in group["ports"])
            table.add_row(str(t["id"]), t["name"], t["image"], _text(ports))
        return table

    _show(answer, as_json, render)


@app.command()
def health(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """The service's health; exits 1 when it is unhealthy."""
    with _client(url, api_key) as client:
        report = client.health()

    def render(report: Json) -> Group:
        table = _table("SERVICE", "STATUS")
        for service, check in report["services"].items():
            # `workers` holds one check per worker (or a status of its own when they are disabled).
            status = check.get("status") or ", ".join(f"{name} {sub['status']}" for name, sub in check.items())
            table.add_row(service, status)
        summary = f"{report['status']} (mode {report['mode']}, version {report['version']}, up {report['uptime']} s)"
        return Group(Text(summary), table)

    _show(report, as_json, render)
    if report["status"] == "unhealthy":
        raise typer.Exit(code=1)


@autostop_app.command("stats")
def autostop_stats(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Auto-stop figures: watched, eligible, next deadline, stopped and saved."""
    with _client(url, api_key) as client:
        stats = client.autostop_stats()

    def render(stats: Json) -> Table:
        table = _table("FIGURE", "VALUE")
        for key, value in stats.items():
            if isinstance(value, dict):  # nextDeadline: the instance that stops first
                value = f"{value.get('name')} ({value.get('instanceId')}) at {_when(value.get('stopsAt'))}"
            table.add_row(key, _when(value) if key.endswith("At") else _text(value))
        return table

    _show(stats, as_json, render)


@autostop_app.command("trigger")
def autostop_trigger(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    dry_run: Annotated[bool, typer.Option("--dry-run/--no-dry-run", help="Only report what would stop.")] = True,
) -> None:
    """Run an auto-stop sweep now (a dry run unless --no-dry-run)."""
    with _client(url, api_key) as client:
        answer = client.autostop_trigger(dry_run=dry_run)

    def render(answer: Json) -> RenderableType:
        items = answer["wouldStop"] if answer["dryRun"] else answer["stopped"]
        summary = f"{'would stop (dry run)' if answer['dryRun'] else 'stopped'}: {len(items)}"
        if not items:
            return summary
        table = _table("ID", "NAME", "STATUS", "IDLE MIN", "STOPS AT", keep=2)
        for c in items:
            table.add_row(c["instanceId"], c["name"], c["status"], _text(c["idleMinutes"]), _when(c["stopsAt"]))
        return Group(Text(summary), table)

    _show(answer, as_json, render)


def main() -> None:  # pragma: no cover - entry point shim
    sys.exit(app())
