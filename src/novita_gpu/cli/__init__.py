"""The `novita-gpu` command: run the service or the emulator, and drive instances through the service's API.

Client commands use the sync SDK. They print rich tables, or the server's JSON with `--json`. An API
error prints `error: CODE: message (request id)`, with the fields and reasons of its details, on stderr
and exits 1 (as does a wait that fails or times out); a service that cannot be reached, or a URL or
config file that cannot be used, exits 2. docs/cli.md has every command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from novita_gpu import __version__
from novita_gpu.cli import costs, db, instances, server, service, session
from novita_gpu.cli.events import events as follow_events

app = typer.Typer(
    help="A self-hosted control plane for Novita.ai GPU instances.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would include the API key
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"novita-gpu {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    url: Annotated[str | None, typer.Option("--url", help=session.GLOBAL_URL_HELP, show_default=False)] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help=session.GLOBAL_KEY_HELP, show_default=False)] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", envvar="NOVITA_GPU_PROFILE", help=session.PROFILE_HELP, show_default=False),
    ] = None,
) -> None:
    """A self-hosted control plane for Novita.ai GPU instances."""
    # --url, --api-key and --profile count for every client command (cli/session.py).
    from_command_line = (source := ctx.get_parameter_source("profile")) is not None and source.name == "COMMANDLINE"
    session.begin(url, api_key, profile, from_command_line)


app.command()(server.serve)
app.command()(server.emulator)
app.add_typer(db.app, name="db")
app.add_typer(instances.app, name="instances")
app.command("events")(follow_events)
app.command()(service.products)
app.command()(service.templates)
app.command()(service.health)
app.add_typer(service.autostop, name="autostop")
app.command("costs")(costs.costs)
