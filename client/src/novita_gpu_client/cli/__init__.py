"""The `novita-gpu` command: drive instances through a novita-gpu service's API, from anywhere.

The commands here use the sync SDK. Other distributions add theirs through the entry-point group
`novita_gpu.commands` (plugins.py): the server distribution adds `serve`, `emulator` and `db`, so one
`novita-gpu` command (this distribution's script) has them all once the server is installed.

Client commands print tables that fit the terminal, or the server's JSON with `--json`. An API error
prints `error: CODE: message (request id)`, with the fields and reasons of its details, on stderr and
exits 1 (as does a wait that fails or times out); a service that cannot be reached, or a URL or config
file that cannot be used, exits 2. docs/cli.md has every command.

Help is click's plain layout (flag names whole, text wrapped at 78 columns), not typer's rich panels:
at 80 columns their six-column tables cut flag names and squeezed the help to a few words a line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from novita_gpu_client.cli import costs, instances, plugins, pools, service, session, teams, volumes
from novita_gpu_client.cli.audit import audit
from novita_gpu_client.cli.events import events as follow_events
from novita_gpu_client.version import __version__

# What a value of each Python type is called after its flag (typer's own labels read `<int>`, `<list[str]>`).
_METAVARS: dict[Any, str] = {str: "TEXT", int: "N", float: "NUMBER", Path: "PATH"}


def _metavar(option: TyperOption) -> str | None:
    """A name for what `option` takes, when its declaration gives none: N, TEXT, stop|delete..."""
    described = option.type_descriptor
    if described.is_choice:
        return "|".join(str(getattr(choice, "value", choice)) for choice in described.choices or ())
    annotation = described.annotation
    if described.is_list:
        annotation = (get_args(annotation) or (str,))[0]
    return _METAVARS.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


def _short_help(text: str) -> str:
    """A command's first sentence, for the list of commands (whole: click would cut it at one line)."""
    paragraph = " ".join(text.strip().split("\n\n", 1)[0].split())
    return re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0].rstrip(".")


def _readable(command: Any) -> None:
    """Give every option of `command` and its subcommands a metavar (none on a switch) and every command
    a whole first sentence as its line in the list of commands."""
    for param in command.params:
        if isinstance(param, TyperOption) and not param.is_flag and not param.count and param.metavar is None:
            param.metavar = _metavar(param)
        elif isinstance(param, TyperArgument):
            # Named by its metavar alone (`ID|NAME`, not `ID|NAME <str>`); typer brackets optional ones itself.
            name = param.metavar or str(param.name or "value").upper()
            param.metavar = name[1:-1] if name.startswith("[") and name.endswith("]") else name
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010 (an instance's own method)
    if command.short_help is None and command.help:
        command.short_help = _short_help(command.help)
    for sub in (getattr(command, "commands", None) or {}).values():
        _readable(sub)


class _Group(TyperGroup):
    """The root group: readable help for the whole tree, built once per run (`typer.main.get_command`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _readable(self)


app = typer.Typer(
    cls=_Group,
    help="A self-hosted control plane for Novita.ai GPU instances.",
    no_args_is_help=True,
    rich_markup_mode=None,  # click's help layout: see the module's docstring
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
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", help=session.GLOBAL_URL_HELP, show_default=False)
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", metavar="KEY", help=session.GLOBAL_KEY_HELP, show_default=False)
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", envvar="NOVITA_GPU_PROFILE", metavar="NAME", help=session.PROFILE_HELP, show_default=False
        ),
    ] = None,
    retry_for: Annotated[
        float | None,
        typer.Option(
            "--retry-for",
            envvar="NOVITA_GPU_RETRY_FOR",
            metavar="SECONDS",
            min=0.5,
            help=session.RETRY_FOR_HELP,
            show_default=False,
        ),
    ] = None,
) -> None:
    """A self-hosted control plane for Novita.ai GPU instances."""
    # --url, --api-key, --profile and --retry-for count for every client command (cli/session.py).
    from_command_line = (source := ctx.get_parameter_source("profile")) is not None and source.name == "COMMANDLINE"
    session.begin(url, api_key, profile, from_command_line, retry_for)


app.add_typer(instances.app, name="instances")
app.command("events")(follow_events)
app.command("products")(service.products)
app.command("templates")(service.templates)
app.command()(service.health)
app.add_typer(service.autostop, name="autostop")
app.command("costs")(costs.costs)
app.add_typer(costs.budget_app, name="budget")
app.add_typer(volumes.app, name="volumes")
app.add_typer(pools.app, name="pools")
app.command("me")(teams.me)
app.add_typer(teams.app, name="teams")
app.command("audit")(audit)
# Last: what other distributions add (the server: serve, emulator, db) never replaces a command above.
plugins.add_commands(app)
