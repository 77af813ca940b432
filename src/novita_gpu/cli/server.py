"""`novita-gpu serve` and `novita-gpu emulator`: run the service, or Novita's emulator alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer


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
    app = create_app(settings)  # first: it configures logging
    _prepare_store(settings.database_url)
    serve_forever(app, host, port)


def _prepare_store(url: str) -> None:
    """Migrate before listening, so a store we cannot use is one line on stderr and a non-zero exit, not
    a traceback from a failed start-up (the app's own migration then finds the schema at head)."""
    import structlog
    from sqlalchemy.exc import DBAPIError

    from novita_gpu.db import display_url, migrate_store
    from novita_gpu.migrations import StoreTooNew

    try:
        asyncio.run(migrate_store(url))
    except StoreTooNew as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    except Exception as exc:  # unreachable, refused, no such database...: the traceback goes to the log
        structlog.get_logger(__name__).error("store_unusable", exc_info=exc)
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        typer.echo(f"error: cannot use the store at {display_url(url)}: {reason}", err=True)
        raise typer.Exit(code=1) from exc


def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(4000, help="Port to listen on."),
    speed: float = typer.Option(1.0, help="Timing multiplier: 10 makes instances boot ten times faster."),
    seed: int = typer.Option(42, help="Seed for the emulator's randomness."),
    api_key: list[str] = typer.Option(None, help="Accept only these API keys (default: any non-empty key)."),
    state: Path | None = typer.Option(
        None, help="Keep the emulated account in this file, so it survives restarts (default: in memory)."
    ),
) -> None:
    """Run the Novita API emulator alone (for offline development and tests)."""
    from novita_gpu.emulator.app import create_emulator_app
    from novita_gpu.emulator.config import EmulatorConfig
    from novita_gpu.emulator.state_file import StateFile
    from novita_gpu.observability.logging import configure_logging
    from novita_gpu.serving import serve_forever

    config = EmulatorConfig(speed=speed, seed=seed, api_keys=list(api_key or []))
    typer.echo(f"Novita emulator on http://{host}:{port}/gpu-instance/openapi/v1 (speed x{speed})", err=True)
    configure_logging("INFO", "console")
    serve_forever(create_emulator_app(config, state=StateFile(state) if state else None), host, port)
