"""`novita-gpu db`: the store's migrations and backups, for operators (see docs/operations.md).

Each command reads DATABASE_URL like `serve` does. A store that cannot be used is one line on stderr,
`error: ...`, with exit code 1 (2 for a store migrated by a newer version, or a backup asked of
PostgreSQL).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from novita_gpu.cli.server import CONFIG_ERROR, fail, load_settings, one_line_reason, store_errors

app = typer.Typer(help="The store: migrations and backups.", no_args_is_help=True)


def _database_url() -> str:
    """DATABASE_URL (normalised), with logs on stderr: stdout is the command's answer."""
    from novita_gpu.observability.logging import configure_logging

    settings = load_settings()
    level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    configure_logging(level, "console", stream=sys.stderr)
    return settings.database_url


@app.command()
def upgrade() -> None:
    """Apply the migrations this version has (what `serve` does at start). Safe to run while replicas
    start: on PostgreSQL one migration at a time holds an advisory lock; the others wait for it."""
    from novita_gpu.kit.db import describe_store, migrate_store

    url = _database_url()
    with store_errors(url):
        before, after = asyncio.run(migrate_store(url))
    store = describe_store(url)
    if before == after:
        typer.echo(f"store {store} at revision {_revisions(after)}: already up to date")
    else:
        typer.echo(f"store {store} upgraded from {_revisions(before)} to revision {_revisions(after)}")


@app.command()
def current() -> None:
    """Print the store's revision and whether this version's migrations have all been applied."""
    from novita_gpu.kit.db import describe_store, sqlite_file, store_revision

    url = _database_url()
    path = sqlite_file(url)
    if path is not None and not path.exists():
        fail(f"no SQLite store at {path} (`novita-gpu db upgrade` or `novita-gpu serve` creates it)")
    with store_errors(url):
        revision = asyncio.run(store_revision(url))
    if revision.up_to_date:
        state = "up to date"
    elif not revision.known:
        state = f"migrated by a newer novita-gpu (this one knows up to {revision.head}): upgrade novita-gpu"
    else:
        state = f"behind {revision.head}: run `novita-gpu db upgrade` (or start the service, which upgrades)"
    typer.echo(f"store {describe_store(url)} at revision {_revisions(revision.current)}: {state}")


@app.command()
def backup(
    file: Path = typer.Argument(..., help="Where to write the copy (replaced if it exists).", dir_okay=False),
) -> None:
    """Copy a SQLite store to FILE, consistent even while the service runs and writes (SQLite's online
    backup). On PostgreSQL use pg_dump (docs/operations.md)."""
    from novita_gpu.kit.db import backup_sqlite, describe_store, sqlite_file

    url = _database_url()
    path = sqlite_file(url)
    if path is None:
        fail(
            f"db backup copies SQLite stores only; back up {describe_store(url)} with pg_dump, e.g. "
            f"pg_dump --format=custom --file {file} '{describe_store(url)}' (restore with pg_restore; "
            "see docs/operations.md)",
            CONFIG_ERROR,
        )
    try:
        backup_sqlite(path, file)
    except Exception as exc:  # no such store, an unwritable target, a locked or damaged store...
        fail(f"cannot back up {path} to {file}: {one_line_reason(exc)}")
    typer.echo(f"backed up {path} to {file} ({file.stat().st_size} bytes)")


def _revisions(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "none (empty)"
