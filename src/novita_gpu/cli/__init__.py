"""The `novita-gpu` command: run the service or the emulator, and drive instances through the service's API.

Client commands use the sync SDK. They print rich tables, or the server's JSON with `--json`. An API
error prints `error: CODE: message (request id)` on stderr and exits 1 (as does a wait that fails or
times out); a service that cannot be reached exits 2.
"""

from __future__ import annotations

import typer

from novita_gpu import __version__
from novita_gpu.cli import db, instances, server, service
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
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """A self-hosted control plane for Novita.ai GPU instances."""


app.command()(server.serve)
app.command()(server.emulator)
app.add_typer(db.app, name="db")
app.add_typer(instances.app, name="instances")
app.command("events")(follow_events)
app.command()(service.products)
app.command()(service.templates)
app.command()(service.health)
app.add_typer(service.autostop, name="autostop")
