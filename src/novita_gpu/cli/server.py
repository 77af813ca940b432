"""`novita-gpu serve` and `novita-gpu emulator`: run the service, or Novita's emulator alone.

Every way start-up can fail (bad configuration, an insecure one, a port in use, a store that cannot be
used or was migrated by a newer version, a failed start of the app) ends with one line on stderr,
`error: ...`, and a non-zero exit: 2 for configuration to fix, 1 for the environment (port, store). The
traceback, if any, goes to the log at debug.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError

    from novita_gpu.kit.settings import Settings

CONFIG_ERROR = 2  # the operator must change the configuration (or the store's version)
ENVIRONMENT_ERROR = 1  # something outside: the port, the database, the file system

_HIDDEN_INPUT = ("key", "secret", "token", "password", "url")  # values never echoed back


def fail(message: str, code: int = ENVIRONMENT_ERROR) -> NoReturn:
    """One line on stderr and the exit code: what an operator (or systemd) reads of a failed start."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code=code)


def load_settings() -> Settings:
    """The settings, or exit with one line naming each bad variable and why (never a secret's value)."""
    from pydantic import ValidationError

    from novita_gpu.kit.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        fail(describe_validation_error(exc), CONFIG_ERROR)


def describe_validation_error(exc: ValidationError) -> str:
    """`PORT: Input should be a valid integer (got 'abc')`, one clause per bad variable."""
    clauses = []
    for error in exc.errors():
        variable = str(error["loc"][0]).upper() if error["loc"] else "configuration"
        reason = error["msg"].removeprefix("Value error, ")
        reason = reason.split(", unable to parse", 1)[0]  # pydantic repeats itself
        shown = "" if any(word in variable.lower() for word in _HIDDEN_INPUT) else _shown(error.get("input"))
        clauses.append(f"{variable}: {reason}{shown}")
    return "; ".join(clauses)


def _shown(value: object) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # comma-separated settings: the one item given
    text = repr(value)
    return f" (got {text if len(text) <= 60 else text[:57] + '...'})"


def one_line_reason(exc: BaseException) -> str:
    """The first line of what went wrong (the driver's own message for a database error)."""
    from sqlalchemy.exc import DBAPIError

    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(cause, OSError) and cause.strerror:
        where = f": {cause.filename}" if cause.filename else ""
        return f"{cause.strerror}{where}"
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


@contextlib.contextmanager
def store_errors(url: str) -> Iterator[None]:
    """Turn a store we cannot use into one line and an exit code (the traceback goes to the log)."""
    import structlog

    from novita_gpu.kit.db import display_url
    from novita_gpu.kit.migrations import StoreTooNew

    try:
        yield
    except StoreTooNew as exc:
        fail(str(exc), CONFIG_ERROR)
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:  # unreachable, refused, no such database, not writable...
        structlog.get_logger(__name__).debug("store_unusable", exc_info=exc)
        fail(f"cannot use the store at {display_url(url)}: {one_line_reason(exc)}")


def serve(
    host: str = typer.Option(None, help="Address to listen on (default: HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default: PORT or 3000)."),
) -> None:
    """Run the service (against the built-in emulator unless NOVITA_API_KEY is set)."""
    from novita_gpu.kit.connections import ConnectionLimits
    from novita_gpu.kit.serving import CannotListen, StartupFailed, bound_socket, serve_forever
    from novita_gpu.kit.settings import InsecureConfiguration

    settings = load_settings()
    host = host or settings.host
    port = settings.port if port is None else port
    try:
        settings.check_exposure(host)
    except InsecureConfiguration as exc:
        fail(str(exc), CONFIG_ERROR)
    try:
        sock = bound_socket(host, port)  # first: a port in use is known before the store is touched
    except CannotListen as exc:
        fail(f"{exc}{_port_hint(exc, 'PORT or --port')}")
    from novita_gpu.app import create_app

    app = create_app(settings)  # before the store: it configures logging
    _prepare_store(settings.database_url)
    try:
        serve_forever(
            app,
            sock,
            on_started=lambda: _log_listening(settings, host, int(sock.getsockname()[1])),
            limits=ConnectionLimits.from_settings(settings),
        )
    except StartupFailed as exc:
        _startup_failed(exc.__cause__ or exc)


def _port_hint(exc: BaseException, setting: str) -> str:
    in_use = isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EADDRINUSE
    return f" (another process has it: choose another port with {setting})" if in_use else ""


def _prepare_store(url: str) -> None:
    """Migrate before listening, so a store we cannot use is one line on stderr and a non-zero exit, not
    a traceback from a failed start-up (the app's own migration then finds the schema at head)."""
    from novita_gpu.kit.db import migrate_store

    with store_errors(url):
        asyncio.run(migrate_store(url))


def _startup_failed(cause: BaseException) -> NoReturn:
    """The app's own start-up raised (the built-in emulator's port or state file, or a newer release
    migrating the store between our migration and the app's)."""
    from novita_gpu.instances.store_upstream import MixedUpstreams
    from novita_gpu.kit.migrations import StoreTooNew
    from novita_gpu.kit.serving import CannotListen

    if isinstance(cause, StoreTooNew | MixedUpstreams):
        fail(str(cause), CONFIG_ERROR)
    if isinstance(cause, CannotListen):  # the only socket bound during start-up is the built-in emulator's
        fail(f"the service did not start: the built-in emulator {cause} (EMULATOR_PORT; 0 picks a free one)")
    fail(f"the service did not start: {one_line_reason(cause)}")


def _log_listening(settings: Settings, host: str, port: int) -> None:
    """The one start-up line an operator looks for: where, which version, against what."""
    import structlog

    from novita_gpu import __version__
    from novita_gpu.kit.db import describe_store

    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    mode = "emulator" if settings.emulator_mode else "Novita"
    store = describe_store(settings.database_url)
    structlog.get_logger(__name__).info(
        "listening",
        message=f"novita-gpu {__version__} listening on {url} ({mode} mode, store {store})",
        url=url,
        mode=settings.mode,
        store=store,
        version=__version__,
    )


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
    from novita_gpu.kit.serving import CannotListen, StartupFailed, bound_socket, serve_forever
    from novita_gpu.observability.logging import configure_logging

    config = EmulatorConfig(speed=speed, seed=seed, api_keys=list(api_key or []))
    try:
        sock = bound_socket(host, port)
    except CannotListen as exc:
        fail(f"{exc}{_port_hint(exc, '--port')}")
    typer.echo(f"Novita emulator on http://{host}:{port}/gpu-instance/openapi/v1 (speed x{speed})", err=True)
    configure_logging("INFO", "console")
    try:
        state_file = StateFile(state) if state else None
    except Exception as exc:  # a directory we cannot write, a file that is not SQLite...
        fail(f"cannot keep the emulator's state in {state}: {one_line_reason(exc)}")
    try:
        serve_forever(create_emulator_app(config, state=state_file), sock)
    except StartupFailed as exc:
        _startup_failed(exc.__cause__ or exc)
