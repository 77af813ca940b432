"""Commands that other distributions add to `novita-gpu`: the entry points of the group `novita_gpu.commands`.

The `novita-gpu` script is this distribution's alone (two distributions writing one file would break each
other's installs and uninstalls). The server distribution declares `serve`, `emulator` and `db` in this
group (its pyproject.toml), so installing it adds them here, and a client installed without it has the
client commands only. An entry point's name is the command's name; its object is a function (one command)
or a `typer.Typer` (a group, like `db`). A name this command line already has is never replaced. A
command that cannot be loaded (its distribution broken or half installed) stays listed and, when run,
says why in one line: the client commands keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import typer

GROUP = "novita_gpu.commands"


def add_commands(app: typer.Typer, found: Iterable[EntryPoint] | None = None) -> list[str]:
    """Add each entry point of `found` (default: the installed ones of GROUP) to `app`; the names added."""
    taken = command_names(app)
    added = []
    for entry in entry_points(group=GROUP) if found is None else found:
        if entry.name in taken:
            continue
        try:
            command = entry.load()
        except Exception as exc:  # an import error, a missing dependency: the client commands still work
            command = _unavailable(entry, exc)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=entry.name)
        else:
            app.command(entry.name)(command)
        taken.add(entry.name)
        added.append(entry.name)
    return added


def command_names(app: typer.Typer) -> set[str]:
    """The names of `app`'s commands and groups (a command without one is named after its function)."""
    names = {group.name for group in app.registered_groups if group.name}
    for info in app.registered_commands:
        if info.name:
            names.add(info.name)
        elif info.callback is not None:
            names.add(info.callback.__name__.lower().replace("_", "-"))
    return names


def _unavailable(entry: EntryPoint, exc: Exception) -> Callable[..., Any]:
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    where = entry.dist.name if entry.dist is not None else entry.value

    def unavailable() -> None:
        typer.echo(f"error: `novita-gpu {entry.name}` ({where}) cannot be loaded: {reason}", err=True)
        raise typer.Exit(1)

    unavailable.__doc__ = f"Unavailable: {where} is installed but cannot be loaded (run it to see why)."
    return unavailable
